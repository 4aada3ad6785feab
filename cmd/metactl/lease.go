package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

// intArg parses the argument s, named name, as an integer of bits bits.
func intArg(name, s string, bits int) (int64, error) {
	v, err := strconv.ParseInt(s, 10, bits)
	if err != nil {
		return 0, fmt.Errorf("%s %q: not an integer", name, s)
	}
	return v, nil
}

// intArgCommand is a subcommand whose one argument is an integer (name:
// what its error calls it): it parses it, then shows what call returns for
// it.
func intArgCommand[R proto.Message](a *app, use, short, name string, call func(context.Context, *client.Client, int64) (R, error), text func(R)) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			v, err := intArg(name, args[0], 64)
			if err != nil {
				return err
			}
			return show(a, func(ctx context.Context, c *client.Client) (R, error) { return call(ctx, c, v) }, text)
		},
	}
}

// leaseByID is a lease subcommand whose one argument is a lease ID.
func leaseByID[R proto.Message](a *app, use, short string, call func(context.Context, *client.Client, int64) (R, error), text func(R)) *cobra.Command {
	return intArgCommand(a, use, short, "lease id", call, text)
}

func (a *app) leaseCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "lease", Short: "Leases: time-to-live for keys (put --lease ID)"}
	var id int64
	grant := intArgCommand(a, "grant TTL_SECONDS", "Grant a lease and print its id", "TTL_SECONDS",
		func(ctx context.Context, c *client.Client, ttl int64) (*metapb.LeaseGrantResponse, error) {
			return c.LeaseGrant(ctx, &metapb.LeaseGrantRequest{TtlSeconds: ttl, Id: id})
		}, func(resp *metapb.LeaseGrantResponse) { fmt.Fprintln(a.out, resp.Id) })
	grant.Flags().Int64Var(&id, "id", 0, "lease id (default: the server picks one)")
	keepalive := leaseByID(a, "keepalive ID", "Renew a lease by its TTL",
		func(ctx context.Context, c *client.Client, id int64) (*metapb.LeaseKeepAliveResponse, error) {
			return c.LeaseKeepAlive(ctx, &metapb.LeaseKeepAliveRequest{Id: id})
		}, func(resp *metapb.LeaseKeepAliveResponse) {
			fmt.Fprintf(a.out, "lease %d renewed for %ds\n", resp.Id, resp.TtlSeconds)
		})
	revoke := leaseByID(a, "revoke ID", "Revoke a lease, deleting its keys",
		func(ctx context.Context, c *client.Client, id int64) (*metapb.LeaseRevokeResponse, error) {
			return c.LeaseRevoke(ctx, &metapb.LeaseRevokeRequest{Id: id})
		}, func(resp *metapb.LeaseRevokeResponse) { fmt.Fprintf(a.out, "revoked; %d keys deleted\n", resp.Deleted) })
	var keys bool
	ttl := leaseByID(a, "ttl ID", "Print a lease's remaining seconds (-1: gone)",
		func(ctx context.Context, c *client.Client, id int64) (*metapb.LeaseTimeToLiveResponse, error) {
			return c.LeaseTimeToLive(ctx, &metapb.LeaseTimeToLiveRequest{Id: id, Keys: keys})
		}, func(resp *metapb.LeaseTimeToLiveResponse) {
			fmt.Fprintf(a.out, "lease %d: %ds left of %ds\n", resp.Id, resp.TtlSeconds, resp.GrantedTtlSeconds)
			for _, k := range resp.Keys {
				fmt.Fprintln(a.out, string(k))
			}
		})
	ttl.Flags().BoolVar(&keys, "keys", false, "also print the keys attached to the lease")
	cmd.AddCommand(grant, keepalive, revoke, ttl)
	return cmd
}
