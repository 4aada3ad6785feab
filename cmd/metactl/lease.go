package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

func parseLeaseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("lease id %q: not an integer", s)
	}
	return id, nil
}

func (a *app) leaseCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "lease", Short: "Leases: time-to-live for keys (put --lease ID)"}
	var id int64
	grant := &cobra.Command{
		Use: "grant TTL_SECONDS", Short: "Grant a lease and print its id", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			ttl, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("TTL_SECONDS %q: not an integer", args[0])
			}
			return a.with(func(ctx context.Context, c *client.Client) error {
				resp, err := c.LeaseGrant(ctx, &metapb.LeaseGrantRequest{TtlSeconds: ttl, Id: id})
				if err != nil {
					return err
				}
				return a.emit(resp, func() { fmt.Fprintln(a.out, resp.Id) })
			})
		},
	}
	grant.Flags().Int64Var(&id, "id", 0, "lease id (default: the server picks one)")
	keepalive := &cobra.Command{
		Use: "keepalive ID", Short: "Renew a lease by its TTL", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			id, err := parseLeaseID(args[0])
			if err != nil {
				return err
			}
			return a.with(func(ctx context.Context, c *client.Client) error {
				resp, err := c.LeaseKeepAlive(ctx, &metapb.LeaseKeepAliveRequest{Id: id})
				if err != nil {
					return err
				}
				return a.emit(resp, func() { fmt.Fprintf(a.out, "lease %d renewed for %ds\n", resp.Id, resp.TtlSeconds) })
			})
		},
	}
	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Revoke a lease, deleting its keys", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			id, err := parseLeaseID(args[0])
			if err != nil {
				return err
			}
			return a.with(func(ctx context.Context, c *client.Client) error {
				resp, err := c.LeaseRevoke(ctx, &metapb.LeaseRevokeRequest{Id: id})
				if err != nil {
					return err
				}
				return a.emit(resp, func() { fmt.Fprintf(a.out, "revoked; %d keys deleted\n", resp.Deleted) })
			})
		},
	}
	var keys bool
	ttl := &cobra.Command{
		Use: "ttl ID", Short: "Print a lease's remaining seconds (-1: gone)", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			id, err := parseLeaseID(args[0])
			if err != nil {
				return err
			}
			return a.with(func(ctx context.Context, c *client.Client) error {
				resp, err := c.LeaseTimeToLive(ctx, &metapb.LeaseTimeToLiveRequest{Id: id, Keys: keys})
				if err != nil {
					return err
				}
				return a.emit(resp, func() {
					fmt.Fprintf(a.out, "lease %d: %ds left of %ds\n", resp.Id, resp.TtlSeconds, resp.GrantedTtlSeconds)
					for _, k := range resp.Keys {
						fmt.Fprintln(a.out, string(k))
					}
				})
			})
		},
	}
	ttl.Flags().BoolVar(&keys, "keys", false, "also print the keys attached to the lease")
	cmd.AddCommand(grant, keepalive, revoke, ttl)
	return cmd
}
