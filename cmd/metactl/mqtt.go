package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

func unixNano(ns int64) string {
	if ns == 0 {
		return "-"
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339)
}

func (a *app) printSessions(ss []*metapb.Session) {
	a.table("CLIENT\tBROKER\tCONNECTED\tEXPIRY\tEXPIRES AT\tREVISION\tSTATE BYTES", func(tw io.Writer) {
		for _, s := range ss {
			exp := fmt.Sprintf("%ds", s.ExpiryIntervalSeconds)
			if s.ExpiryIntervalSeconds == 0xFFFFFFFF {
				exp = "never"
			}
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%d\t%d\n", s.ClientId, s.BrokerId, s.Connected, exp, unixNano(s.ExpiresAtUnixNano), s.ModRevision, len(s.State))
		}
	})
}

// staleGet is a "get" subcommand of one argument, with --stale: it shows
// what call returns for the argument at the consistency --stale picks, and
// in text output fails as not found (what: the thing not found, with a %q
// for the argument) where missing says so.
func staleGet[R proto.Message](a *app, use, short string, call func(context.Context, *client.Client, string, metapb.ReadConsistency) (R, error),
	missing func(R) bool, what string, text func(R)) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use: use, Short: short, Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return showOr(a, func(ctx context.Context, c *client.Client) (R, error) {
				return call(ctx, c, args[0], consistency(stale))
			}, func(resp R) error { return notFound(missing(resp), what, args[0]) }, text)
		},
	}
	staleFlag(cmd.Flags(), &stale)
	return cmd
}

func (a *app) sessionCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "session", Short: "MQTT sessions"}
	var broker, state string
	var disconnected bool
	var expiry uint32
	put := &cobra.Command{
		Use: "put CLIENT_ID...", Short: "Create or replace sessions (one call, split by data group)", Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			req := &metapb.PutSessionsRequest{}
			for _, id := range args {
				req.Sessions = append(req.Sessions, &metapb.Session{ClientId: id, BrokerId: broker, Connected: !disconnected,
					ExpiryIntervalSeconds: expiry, State: []byte(state)})
			}
			return show(a, func(ctx context.Context, c *client.Client) (*metapb.PutSessionsResponse, error) {
				return c.PutSessions(ctx, req)
			}, func(resp *metapb.PutSessionsResponse) {
				fmt.Fprintf(a.out, "put %d sessions in %d groups\n", len(args), resp.Groups)
			})
		},
	}
	put.Flags().StringVar(&broker, "broker", "", "broker holding the connection")
	put.Flags().BoolVar(&disconnected, "disconnected", false, "the client is disconnected (the session expires after --expiry)")
	put.Flags().Uint32Var(&expiry, "expiry", 0, "session expiry interval in seconds (4294967295: never)")
	put.Flags().StringVar(&state, "state", "", "opaque session state")

	get := staleGet(a, "get CLIENT_ID", "Print a session",
		func(ctx context.Context, c *client.Client, id string, cons metapb.ReadConsistency) (*metapb.GetSessionResponse, error) {
			return c.GetSession(ctx, &metapb.GetSessionRequest{ClientId: id, Consistency: cons})
		}, func(resp *metapb.GetSessionResponse) bool { return resp.Session == nil }, "session %q",
		func(resp *metapb.GetSessionResponse) { a.printSessions([]*metapb.Session{resp.Session}) })

	var stale bool
	var limit uint32
	var all bool
	var byBroker string
	list := &cobra.Command{
		Use: "list", Short: "List sessions in client id order (one page, or every page with --all)", Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			req := &metapb.ListSessionsRequest{Limit: limit, BrokerId: byBroker, Consistency: consistency(stale)}
			return pages(a, all, &req.StartAfter, func(ctx context.Context, c *client.Client) (*metapb.ListSessionsResponse, error) {
				return c.ListSessions(ctx, req)
			}, func(resp *metapb.ListSessionsResponse) { a.printSessions(resp.Sessions) })
		},
	}
	pageFlags(list.Flags(), &limit, &all, "sessions")
	list.Flags().StringVar(&byBroker, "broker", "", "only sessions held by this broker")
	staleFlag(list.Flags(), &stale)

	del := &cobra.Command{
		Use: "del CLIENT_ID...", Aliases: []string{"delete"}, Short: "Delete sessions", Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return show(a, func(ctx context.Context, c *client.Client) (*metapb.DeleteSessionsResponse, error) {
				return c.DeleteSessions(ctx, &metapb.DeleteSessionsRequest{ClientIds: args})
			}, func(resp *metapb.DeleteSessionsResponse) {
				for i, id := range args {
					what := "deleted"
					if !resp.Deleted[i] {
						what = "no session"
					}
					fmt.Fprintf(a.out, "%s: %s\n", id, what)
				}
			})
		},
	}
	cmd.AddCommand(put, get, list, del)
	return cmd
}

func (a *app) retainedCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "retained", Short: "MQTT retained messages"}
	var qos uint32
	set := &cobra.Command{
		Use: "set TOPIC PAYLOAD", Short: "Set a topic's retained message (an empty PAYLOAD deletes it)", Args: cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			return show(a, func(ctx context.Context, c *client.Client) (*metapb.SetRetainedResponse, error) {
				return c.SetRetained(ctx, &metapb.SetRetainedRequest{Message: &metapb.RetainedMessage{Topic: args[0], Payload: []byte(args[1]), Qos: qos}})
			}, func(resp *metapb.SetRetainedResponse) {
				if args[1] == "" {
					fmt.Fprintf(a.out, "deleted: %v\n", resp.Deleted)
					return
				}
				fmt.Fprintln(a.out, "OK")
			})
		},
	}
	set.Flags().Uint32Var(&qos, "qos", 0, "QoS 0, 1 or 2")
	get := staleGet(a, "get TOPIC", "Print a topic's retained payload",
		func(ctx context.Context, c *client.Client, topic string, cons metapb.ReadConsistency) (*metapb.GetRetainedResponse, error) {
			return c.GetRetained(ctx, &metapb.GetRetainedRequest{Topic: topic, Consistency: cons})
		}, func(resp *metapb.GetRetainedResponse) bool { return resp.Message == nil }, "retained message of %q",
		func(resp *metapb.GetRetainedResponse) { fmt.Fprintln(a.out, string(resp.Message.Payload)) })
	var stale bool
	var limit uint32
	var all bool
	list := &cobra.Command{
		Use: "list FILTER", Short: "List retained messages matching an MQTT topic filter (+, #)", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			req := &metapb.ListRetainedRequest{TopicFilter: args[0], Limit: limit, Consistency: consistency(stale)}
			return pages(a, all, &req.StartAfter, func(ctx context.Context, c *client.Client) (*metapb.ListRetainedResponse, error) {
				return c.ListRetained(ctx, req)
			}, func(resp *metapb.ListRetainedResponse) {
				for _, m := range resp.Messages {
					fmt.Fprintf(a.out, "%s\t%s\n", m.Topic, m.Payload)
				}
			})
		},
	}
	pageFlags(list.Flags(), &limit, &all, "messages")
	staleFlag(list.Flags(), &stale)
	cmd.AddCommand(set, get, list)
	return cmd
}

func (a *app) printWills(ws []*metapb.Will) {
	a.table("CLIENT\tTOPIC\tSTATE\tDUE AT\tCLAIMED BY\tCLAIM EXPIRES\tREVISION", func(tw io.Writer) {
		for _, w := range ws {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", w.ClientId, w.Topic, strings.TrimPrefix(w.State.String(), "WILL_STATE_"),
				unixNano(w.DueAtUnixNano), w.ClaimedBy, unixNano(w.ClaimExpiresAtUnixNano), w.ModRevision)
		}
	})
}

func (a *app) willCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "will", Short: "MQTT will messages"}
	var topic, payload string
	var qos, delay uint32
	var retain bool
	put := &cobra.Command{
		Use: "put CLIENT_ID", Short: "Set a client's will", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return show(a, func(ctx context.Context, c *client.Client) (*metapb.PutWillResponse, error) {
				return c.PutWill(ctx, &metapb.PutWillRequest{Will: &metapb.Will{ClientId: args[0], Topic: topic,
					Payload: []byte(payload), Qos: qos, Retain: retain, DelaySeconds: delay}})
			}, func(resp *metapb.PutWillResponse) { a.printWills([]*metapb.Will{resp.Will}) })
		},
	}
	put.Flags().StringVar(&topic, "topic", "", "topic to publish the will on")
	put.Flags().StringVar(&payload, "payload", "", "will payload")
	put.Flags().Uint32Var(&qos, "qos", 0, "QoS 0, 1 or 2")
	put.Flags().BoolVar(&retain, "retain", false, "publish as retained")
	put.Flags().Uint32Var(&delay, "delay", 0, "will delay interval in seconds")
	get := staleGet(a, "get CLIENT_ID", "Print a client's will",
		func(ctx context.Context, c *client.Client, id string, cons metapb.ReadConsistency) (*metapb.GetWillResponse, error) {
			return c.GetWill(ctx, &metapb.GetWillRequest{ClientId: id, Consistency: cons})
		}, func(resp *metapb.GetWillResponse) bool { return resp.Will == nil }, "will of %q",
		func(resp *metapb.GetWillResponse) { a.printWills([]*metapb.Will{resp.Will}) })
	del := &cobra.Command{
		Use: "del CLIENT_ID", Aliases: []string{"delete"}, Short: "Delete a client's will", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return showOr(a, func(ctx context.Context, c *client.Client) (*metapb.DeleteWillResponse, error) {
				return c.DeleteWill(ctx, &metapb.DeleteWillRequest{ClientId: args[0]})
			}, func(resp *metapb.DeleteWillResponse) error { return notFound(!resp.Deleted, "will of %q", args[0]) },
				func(*metapb.DeleteWillResponse) { fmt.Fprintln(a.out, "OK") })
		},
	}
	var limit uint32
	var all bool
	due := &cobra.Command{
		Use: "due", Short: "List the wills due now, over every data group", Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			req := &metapb.ListDueWillsRequest{Limit: limit}
			return pages(a, all, &req.StartAfter, func(ctx context.Context, c *client.Client) (*metapb.ListDueWillsResponse, error) {
				return c.ListDueWills(ctx, req)
			}, func(resp *metapb.ListDueWillsResponse) { a.printWills(resp.Wills) })
		},
	}
	pageFlags(due.Flags(), &limit, &all, "wills")
	var broker string
	var ttl uint32
	claim := &cobra.Command{
		Use: "claim CLIENT_ID", Short: "Claim a due will for a broker (exactly one claimer wins)", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return showOr(a, func(ctx context.Context, c *client.Client) (*metapb.ClaimWillResponse, error) {
				return c.ClaimWill(ctx, &metapb.ClaimWillRequest{ClientId: args[0], BrokerId: broker, ClaimTtlSeconds: ttl})
			}, func(resp *metapb.ClaimWillResponse) error {
				if resp.Claimed {
					return nil
				}
				return fmt.Errorf("not claimed: the will is %s (claimed by %q)", strings.TrimPrefix(resp.Will.GetState().String(), "WILL_STATE_"), resp.Will.GetClaimedBy())
			}, func(resp *metapb.ClaimWillResponse) { a.printWills([]*metapb.Will{resp.Will}) })
		},
	}
	claim.Flags().StringVar(&broker, "broker", "", "the claiming broker")
	claim.Flags().Uint32Var(&ttl, "ttl", 0, "claim lifetime in seconds (default 30)")
	complete := &cobra.Command{
		Use: "complete CLIENT_ID", Short: "Delete a will the broker claimed and published", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return showOr(a, func(ctx context.Context, c *client.Client) (*metapb.CompleteWillResponse, error) {
				return c.CompleteWill(ctx, &metapb.CompleteWillRequest{ClientId: args[0], BrokerId: broker})
			}, func(resp *metapb.CompleteWillResponse) error {
				if resp.Completed {
					return nil
				}
				return fmt.Errorf("not completed: the will of %q is not claimed by %q", args[0], broker)
			}, func(*metapb.CompleteWillResponse) { fmt.Fprintln(a.out, "OK") })
		},
	}
	complete.Flags().StringVar(&broker, "broker", "", "the broker that claimed the will")
	cmd.AddCommand(put, get, del, due, claim, complete)
	return cmd
}
