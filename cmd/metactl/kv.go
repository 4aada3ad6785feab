package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

func (a *app) kvCommands() []*cobra.Command {
	var stale, absent, keysOnly, all bool
	var limit uint32
	var lease int64
	consistency := func() metapb.ReadConsistency {
		if stale {
			return metapb.ReadConsistency_READ_CONSISTENCY_STALE
		}
		return metapb.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE
	}
	put := &cobra.Command{
		Use: "put KEY VALUE", Short: "Store a value", Args: cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			return show(a, func(ctx context.Context, c *client.Client) (*metapb.PutResponse, error) {
				return c.Put(ctx, &metapb.PutRequest{Key: []byte(args[0]), Value: []byte(args[1]), Lease: lease})
			}, func(*metapb.PutResponse) { fmt.Fprintln(a.out, "OK") })
		},
	}
	put.Flags().Int64Var(&lease, "lease", 0, "attach the key to this lease (deleted when it expires)")
	get := &cobra.Command{
		Use: "get KEY", Short: "Print a key's value (linearizable unless --stale)", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return showOr(a, func(ctx context.Context, c *client.Client) (*metapb.GetResponse, error) {
				return c.Get(ctx, &metapb.GetRequest{Key: []byte(args[0]), Consistency: consistency()})
			}, func(resp *metapb.GetResponse) error { return notFound(resp.Kv == nil, "key %q", args[0]) },
				func(resp *metapb.GetResponse) { fmt.Fprintln(a.out, string(resp.Kv.Value)) })
		},
	}
	get.Flags().BoolVar(&stale, "stale", false, "read the local replica of the node asked, without confirming it is current")
	del := &cobra.Command{
		Use: "del KEY", Aliases: []string{"delete"}, Short: "Delete a key", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return showOr(a, func(ctx context.Context, c *client.Client) (*metapb.DeleteResponse, error) {
				return c.Delete(ctx, &metapb.DeleteRequest{Key: []byte(args[0])})
			}, func(resp *metapb.DeleteResponse) error { return notFound(!resp.Deleted, "key %q", args[0]) },
				func(*metapb.DeleteResponse) { fmt.Fprintln(a.out, "OK") })
		},
	}
	cas := &cobra.Command{
		Use: "cas KEY OLD NEW", Short: "Set KEY to NEW if its value is OLD (with --absent: if it does not exist; give OLD as \"\")",
		Args: cobra.ExactArgs(3),
		RunE: func(_ *cobra.Command, args []string) error {
			req := &metapb.CompareAndSwapRequest{Key: []byte(args[0]), NewValue: []byte(args[2]), ExpectAbsent: absent}
			if !absent {
				req.ExpectedValue = []byte(args[1])
			}
			return showOr(a, func(ctx context.Context, c *client.Client) (*metapb.CompareAndSwapResponse, error) {
				return c.CompareAndSwap(ctx, req)
			}, func(resp *metapb.CompareAndSwapResponse) error {
				switch {
				case resp.Succeeded:
					return nil
				case resp.Current == nil:
					return fmt.Errorf("compare failed: key %q does not exist", args[0])
				default:
					return fmt.Errorf("compare failed: current value is %q", resp.Current.Value)
				}
			}, func(*metapb.CompareAndSwapResponse) { fmt.Fprintln(a.out, "OK") })
		},
	}
	cas.Flags().BoolVar(&absent, "absent", false, "succeed only if the key does not exist")
	list := &cobra.Command{
		Use: "list PREFIX", Short: "List keys with a prefix (one page, or every page with --all)", Args: cobra.RangeArgs(0, 1),
		RunE: func(_ *cobra.Command, args []string) error {
			req := &metapb.ListRequest{Prefix: []byte(optArg(args, 0)), Limit: limit, KeysOnly: keysOnly, Consistency: consistency()}
			return pages(a, all, &req.StartAfter, func(ctx context.Context, c *client.Client) (*metapb.ListResponse, error) {
				return c.List(ctx, req)
			}, func(resp *metapb.ListResponse) {
				for _, kv := range resp.Kvs {
					if keysOnly {
						fmt.Fprintln(a.out, string(kv.Key))
					} else {
						fmt.Fprintf(a.out, "%s\t%s\n", kv.Key, kv.Value)
					}
				}
			})
		},
	}
	pageFlags(list.Flags(), &limit, &all, "keys")
	list.Flags().BoolVar(&keysOnly, "keys-only", false, "print keys only")
	staleFlag(list.Flags(), &stale)
	mput := &cobra.Command{
		Use: "mput KEY=VALUE...", Short: "Store many values in one call (atomic per data group, not across groups)",
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			req := &metapb.MultiPutRequest{}
			for _, arg := range args {
				k, v, ok := strings.Cut(arg, "=")
				if !ok {
					return fmt.Errorf("%q: want KEY=VALUE", arg)
				}
				req.Puts = append(req.Puts, &metapb.PutRequest{Key: []byte(k), Value: []byte(v), Lease: lease})
			}
			return show(a, func(ctx context.Context, c *client.Client) (*metapb.MultiPutResponse, error) {
				return c.MultiPut(ctx, req)
			}, func(*metapb.MultiPutResponse) { fmt.Fprintln(a.out, "OK") })
		},
	}
	mput.Flags().Int64Var(&lease, "lease", 0, "attach the keys to this lease (deleted when it expires)")
	mget := &cobra.Command{
		Use: "mget KEY...", Short: "Print many keys' values, one \"KEY<tab>VALUE\" line each (linearizable unless --stale)",
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			req := &metapb.MultiGetRequest{Consistency: consistency()}
			for _, k := range args {
				req.Keys = append(req.Keys, []byte(k))
			}
			return showOr(a, func(ctx context.Context, c *client.Client) (*metapb.MultiGetResponse, error) {
				return c.MultiGet(ctx, req)
			}, func(resp *metapb.MultiGetResponse) error {
				var missing []string
				for _, kv := range resp.Kvs {
					if kv.Version == 0 {
						missing = append(missing, fmt.Sprintf("%q", kv.Key))
					}
				}
				return notFound(len(missing) > 0, "keys %s", strings.Join(missing, ", "))
			}, func(resp *metapb.MultiGetResponse) {
				for _, kv := range resp.Kvs {
					fmt.Fprintf(a.out, "%s\t%s\n", kv.Key, kv.Value)
				}
			})
		},
	}
	staleFlag(mget.Flags(), &stale)
	return []*cobra.Command{put, get, del, cas, list, mput, mget}
}
