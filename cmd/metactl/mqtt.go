package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

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
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT\tBROKER\tCONNECTED\tEXPIRY\tEXPIRES AT\tREVISION\tSTATE BYTES")
	for _, s := range ss {
		exp := fmt.Sprintf("%ds", s.ExpiryIntervalSeconds)
		if s.ExpiryIntervalSeconds == 0xFFFFFFFF {
			exp = "never"
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%d\t%d\n", s.ClientId, s.BrokerId, s.Connected, exp, unixNano(s.ExpiresAtUnixNano), s.ModRevision, len(s.State))
	}
	_ = tw.Flush()
}

func (a *app) sessionCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "session", Short: "MQTT sessions"}
	var broker, state string
	var disconnected bool
	var expiry uint32
	put := &cobra.Command{
		Use: "put CLIENT_ID...", Short: "Create or replace sessions (one call, split by data group)", Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return a.with(func(ctx context.Context, c *client.Client) error {
				req := &metapb.PutSessionsRequest{}
				for _, id := range args {
					req.Sessions = append(req.Sessions, &metapb.Session{ClientId: id, BrokerId: broker, Connected: !disconnected,
						ExpiryIntervalSeconds: expiry, State: []byte(state)})
				}
				resp, err := c.PutSessions(ctx, req)
				if err != nil {
					return err
				}
				return a.emit(resp, func() { fmt.Fprintf(a.out, "put %d sessions in %d groups\n", len(args), resp.Groups) })
			})
		},
	}
	put.Flags().StringVar(&broker, "broker", "", "broker holding the connection")
	put.Flags().BoolVar(&disconnected, "disconnected", false, "the client is disconnected (the session expires after --expiry)")
	put.Flags().Uint32Var(&expiry, "expiry", 0, "session expiry interval in seconds (4294967295: never)")
	put.Flags().StringVar(&state, "state", "", "opaque session state")

	var stale bool
	get := &cobra.Command{
		Use: "get CLIENT_ID", Short: "Print a session", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return a.with(func(ctx context.Context, c *client.Client) error {
				resp, err := c.GetSession(ctx, &metapb.GetSessionRequest{ClientId: args[0], Consistency: consistency(stale)})
				if err != nil {
					return err
				}
				if resp.Session == nil && a.output == "text" {
					return fmt.Errorf("session %q: %w", args[0], errNotFound)
				}
				return a.emit(resp, func() { a.printSessions([]*metapb.Session{resp.Session}) })
			})
		},
	}
	get.Flags().BoolVar(&stale, "stale", false, "read the local replica without confirming it is current")

	var limit uint32
	var all bool
	var byBroker string
	list := &cobra.Command{
		Use: "list", Short: "List sessions in client id order (one page, or every page with --all)", Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			return a.with(func(ctx context.Context, c *client.Client) error {
				req := &metapb.ListSessionsRequest{Limit: limit, BrokerId: byBroker, Consistency: consistency(stale)}
				return pages(a, all, func() (*metapb.ListSessionsResponse, error) { return c.ListSessions(ctx, req) },
					func(resp *metapb.ListSessionsResponse) { req.StartAfter = resp.NextStartAfter },
					func(resp *metapb.ListSessionsResponse) { a.printSessions(resp.Sessions) })
			})
		},
	}
	list.Flags().Uint32Var(&limit, "limit", 0, "sessions per page (default 1000, at most 10000)")
	list.Flags().BoolVar(&all, "all", false, "follow pages until the end")
	list.Flags().StringVar(&byBroker, "broker", "", "only sessions held by this broker")
	list.Flags().BoolVar(&stale, "stale", false, "read the local replica without confirming it is current")

	del := &cobra.Command{
		Use: "del CLIENT_ID...", Aliases: []string{"delete"}, Short: "Delete sessions", Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return a.with(func(ctx context.Context, c *client.Client) error {
				resp, err := c.DeleteSessions(ctx, &metapb.DeleteSessionsRequest{ClientIds: args})
				if err != nil {
					return err
				}
				return a.emit(resp, func() {
					for i, id := range args {
						what := "deleted"
						if !resp.Deleted[i] {
							what = "no session"
						}
						fmt.Fprintf(a.out, "%s: %s\n", id, what)
					}
				})
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
			return a.with(func(ctx context.Context, c *client.Client) error {
				resp, err := c.SetRetained(ctx, &metapb.SetRetainedRequest{Message: &metapb.RetainedMessage{Topic: args[0], Payload: []byte(args[1]), Qos: qos}})
				if err != nil {
					return err
				}
				return a.emit(resp, func() {
					if args[1] == "" {
						fmt.Fprintf(a.out, "deleted: %v\n", resp.Deleted)
						return
					}
					fmt.Fprintln(a.out, "OK")
				})
			})
		},
	}
	set.Flags().Uint32Var(&qos, "qos", 0, "QoS 0, 1 or 2")
	var stale bool
	get := &cobra.Command{
		Use: "get TOPIC", Short: "Print a topic's retained payload", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return a.with(func(ctx context.Context, c *client.Client) error {
				resp, err := c.GetRetained(ctx, &metapb.GetRetainedRequest{Topic: args[0], Consistency: consistency(stale)})
				if err != nil {
					return err
				}
				if resp.Message == nil && a.output == "text" {
					return fmt.Errorf("retained message of %q: %w", args[0], errNotFound)
				}
				return a.emit(resp, func() { fmt.Fprintln(a.out, string(resp.Message.Payload)) })
			})
		},
	}
	get.Flags().BoolVar(&stale, "stale", false, "read the local replica without confirming it is current")
	var limit uint32
	var all bool
	list := &cobra.Command{
		Use: "list FILTER", Short: "List retained messages matching an MQTT topic filter (+, #)", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return a.with(func(ctx context.Context, c *client.Client) error {
				req := &metapb.ListRetainedRequest{TopicFilter: args[0], Limit: limit, Consistency: consistency(stale)}
				return pages(a, all, func() (*metapb.ListRetainedResponse, error) { return c.ListRetained(ctx, req) },
					func(resp *metapb.ListRetainedResponse) { req.StartAfter = resp.NextStartAfter },
					func(resp *metapb.ListRetainedResponse) {
						for _, m := range resp.Messages {
							fmt.Fprintf(a.out, "%s\t%s\n", m.Topic, m.Payload)
						}
					})
			})
		},
	}
	list.Flags().Uint32Var(&limit, "limit", 0, "messages per page (default 1000, at most 10000)")
	list.Flags().BoolVar(&all, "all", false, "follow pages until the end")
	list.Flags().BoolVar(&stale, "stale", false, "read the local replica without confirming it is current")
	cmd.AddCommand(set, get, list)
	return cmd
}

func (a *app) printWills(ws []*metapb.Will) {
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT\tTOPIC\tSTATE\tDUE AT\tCLAIMED BY\tCLAIM EXPIRES\tREVISION")
	for _, w := range ws {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", w.ClientId, w.Topic, strings.TrimPrefix(w.State.String(), "WILL_STATE_"),
			unixNano(w.DueAtUnixNano), w.ClaimedBy, unixNano(w.ClaimExpiresAtUnixNano), w.ModRevision)
	}
	_ = tw.Flush()
}

func (a *app) willCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "will", Short: "MQTT will messages"}
	var topic, payload string
	var qos, delay uint32
	var retain bool
	put := &cobra.Command{
		Use: "put CLIENT_ID", Short: "Set a client's will", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return a.with(func(ctx context.Context, c *client.Client) error {
				resp, err := c.PutWill(ctx, &metapb.PutWillRequest{Will: &metapb.Will{ClientId: args[0], Topic: topic,
					Payload: []byte(payload), Qos: qos, Retain: retain, DelaySeconds: delay}})
				if err != nil {
					return err
				}
				return a.emit(resp, func() { a.printWills([]*metapb.Will{resp.Will}) })
			})
		},
	}
	put.Flags().StringVar(&topic, "topic", "", "topic to publish the will on")
	put.Flags().StringVar(&payload, "payload", "", "will payload")
	put.Flags().Uint32Var(&qos, "qos", 0, "QoS 0, 1 or 2")
	put.Flags().BoolVar(&retain, "retain", false, "publish as retained")
	put.Flags().Uint32Var(&delay, "delay", 0, "will delay interval in seconds")
	var stale bool
	get := &cobra.Command{
		Use: "get CLIENT_ID", Short: "Print a client's will", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return a.with(func(ctx context.Context, c *client.Client) error {
				resp, err := c.GetWill(ctx, &metapb.GetWillRequest{ClientId: args[0], Consistency: consistency(stale)})
				if err != nil {
					return err
				}
				if resp.Will == nil && a.output == "text" {
					return fmt.Errorf("will of %q: %w", args[0], errNotFound)
				}
				return a.emit(resp, func() { a.printWills([]*metapb.Will{resp.Will}) })
			})
		},
	}
	get.Flags().BoolVar(&stale, "stale", false, "read the local replica without confirming it is current")
	del := &cobra.Command{
		Use: "del CLIENT_ID", Aliases: []string{"delete"}, Short: "Delete a client's will", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return a.with(func(ctx context.Context, c *client.Client) error {
				resp, err := c.DeleteWill(ctx, &metapb.DeleteWillRequest{ClientId: args[0]})
				if err != nil {
					return err
				}
				if !resp.Deleted && a.output == "text" {
					return fmt.Errorf("will of %q: %w", args[0], errNotFound)
				}
				return a.emit(resp, func() { fmt.Fprintln(a.out, "OK") })
			})
		},
	}
	var limit uint32
	var all bool
	due := &cobra.Command{
		Use: "due", Short: "List the wills due now, over every data group", Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			return a.with(func(ctx context.Context, c *client.Client) error {
				req := &metapb.ListDueWillsRequest{Limit: limit}
				return pages(a, all, func() (*metapb.ListDueWillsResponse, error) { return c.ListDueWills(ctx, req) },
					func(resp *metapb.ListDueWillsResponse) { req.StartAfter = resp.NextStartAfter },
					func(resp *metapb.ListDueWillsResponse) { a.printWills(resp.Wills) })
			})
		},
	}
	due.Flags().Uint32Var(&limit, "limit", 0, "wills per page (default 1000, at most 10000)")
	due.Flags().BoolVar(&all, "all", false, "follow pages until the end")
	var broker string
	var ttl uint32
	claim := &cobra.Command{
		Use: "claim CLIENT_ID", Short: "Claim a due will for a broker (exactly one claimer wins)", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return a.with(func(ctx context.Context, c *client.Client) error {
				resp, err := c.ClaimWill(ctx, &metapb.ClaimWillRequest{ClientId: args[0], BrokerId: broker, ClaimTtlSeconds: ttl})
				if err != nil {
					return err
				}
				if !resp.Claimed && a.output == "text" {
					return fmt.Errorf("not claimed: the will is %s (claimed by %q)", strings.TrimPrefix(resp.Will.GetState().String(), "WILL_STATE_"), resp.Will.GetClaimedBy())
				}
				return a.emit(resp, func() { a.printWills([]*metapb.Will{resp.Will}) })
			})
		},
	}
	claim.Flags().StringVar(&broker, "broker", "", "the claiming broker")
	claim.Flags().Uint32Var(&ttl, "ttl", 0, "claim lifetime in seconds (default 30)")
	complete := &cobra.Command{
		Use: "complete CLIENT_ID", Short: "Delete a will the broker claimed and published", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return a.with(func(ctx context.Context, c *client.Client) error {
				resp, err := c.CompleteWill(ctx, &metapb.CompleteWillRequest{ClientId: args[0], BrokerId: broker})
				if err != nil {
					return err
				}
				if !resp.Completed && a.output == "text" {
					return fmt.Errorf("not completed: the will of %q is not claimed by %q", args[0], broker)
				}
				return a.emit(resp, func() { fmt.Fprintln(a.out, "OK") })
			})
		},
	}
	complete.Flags().StringVar(&broker, "broker", "", "the broker that claimed the will")
	cmd.AddCommand(put, get, del, due, claim, complete)
	return cmd
}
