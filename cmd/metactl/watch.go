package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

// errEnough stops a watch after --limit events.
var errEnough = errors.New("enough events")

func (a *app) watchCommand() *cobra.Command {
	var resources, assignments string
	var wills, brokers, prevKV, showProgress bool
	var rev uint64
	var revs map[string]string
	var progressMs uint32
	var limit int
	cmd := &cobra.Command{
		Use:   "watch [PREFIX]",
		Short: "Print changes as they happen until interrupted: KV keys with PREFIX, or --resources, --wills, --brokers, --assignments",
		Long: `Print changes as they happen, in order per group, until ^C (or --limit events).

By default watches KV keys with PREFIX in every data group. --resources KIND
watches metadata resources of a kind (or "all"; PREFIX then filters names),
--wills will messages (PREFIX filters client ids), --brokers broker
registrations, --assignments BROKER a broker's connector assignments.

Without --rev/--revs the watch starts after the current revision (only new
changes). --rev N starts every group at revision N; --revs data-0=5,data-1=9
starts each named group at its own revision. The watch resumes on another
endpoint if the one serving it fails, without gap or duplicate.`,
		Args: cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &metapb.WatchRequest{PrevKv: prevKV, ProgressIntervalMs: progressMs, StartRevisions: map[string]uint64{}}
			if len(args) == 1 {
				req.Prefix = []byte(args[0])
			}
			spaces := 0
			if cmd.Flags().Changed("resources") {
				spaces++
				req.Space = metapb.WatchSpace_WATCH_SPACE_RESOURCES
				if resources != "all" {
					k, ok := kindByWord(resources)
					if !ok {
						return fmt.Errorf("--resources %q: want all or one of %s", resources, strings.Join(kindWords(), ", "))
					}
					req.ResourceKind = k
				}
			}
			if wills {
				spaces++
				req.Space = metapb.WatchSpace_WATCH_SPACE_WILLS
			}
			if brokers {
				spaces++
				req.Space = metapb.WatchSpace_WATCH_SPACE_BROKERS
			}
			if cmd.Flags().Changed("assignments") {
				spaces++
				req.Space = metapb.WatchSpace_WATCH_SPACE_ASSIGNMENTS
				req.Prefix = []byte(assignments)
			}
			if spaces > 1 {
				return errors.New("give at most one of --resources, --wills, --brokers, --assignments")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			for g, v := range revs {
				var r uint64
				if _, err := fmt.Sscan(v, &r); err != nil {
					return fmt.Errorf("--revs %s=%q: not a revision", g, v)
				}
				req.StartRevisions[g] = r
			}
			if cmd.Flags().Changed("rev") {
				groups, err := a.watchGroups(c, req.Space)
				if err != nil {
					return err
				}
				for _, g := range groups {
					if _, set := req.StartRevisions[g]; !set {
						req.StartRevisions[g] = rev
					}
				}
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			n := 0
			err = c.Watch(ctx, req, func(resp *metapb.WatchResponse) error {
				if err := a.printWatch(resp, showProgress); err != nil {
					return err
				}
				n += len(resp.Events)
				if limit > 0 && n >= limit {
					return errEnough
				}
				return nil
			})
			if errors.Is(err, errEnough) || (errors.Is(err, context.Canceled) && ctx.Err() != nil) {
				return nil
			}
			if g, r, ok := client.Compacted(err); ok {
				return fmt.Errorf("%s is compacted below revision %d: list again, then watch from the listing's revision + 1", g, r)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&resources, "resources", "", "watch metadata resources of this kind (or all)")
	f.BoolVar(&wills, "wills", false, "watch will messages")
	f.BoolVar(&brokers, "brokers", false, "watch broker registrations and liveness")
	f.StringVar(&assignments, "assignments", "", "watch this broker's connector assignments")
	f.Uint64Var(&rev, "rev", 0, "first revision to deliver, in every group")
	f.StringToStringVar(&revs, "revs", nil, "first revision per group, group=revision (repeat)")
	f.BoolVar(&prevKV, "prev-kv", false, "include the previous value of KV keys")
	f.Uint32Var(&progressMs, "progress-ms", 0, "progress notification interval while idle (default 5000)")
	f.BoolVar(&showProgress, "progress", false, "print progress notifications too (text output)")
	f.IntVar(&limit, "limit", 0, "stop after this many events (0: until interrupted)")
	return cmd
}

// watchGroups returns the groups a watch of space covers.
func (a *app) watchGroups(c *client.Client, space metapb.WatchSpace) ([]string, error) {
	if space != metapb.WatchSpace_WATCH_SPACE_KV && space != metapb.WatchSpace_WATCH_SPACE_WILLS {
		return []string{metapb.MetadataGroup}, nil
	}
	ctx, cancel := a.ctx()
	defer cancel()
	var last error
	for _, ep := range c.Endpoints() {
		st, err := c.Status(ctx, ep)
		if err != nil {
			last = err
			continue
		}
		var out []string
		for i := 0; i < int(st.DataGroups); i++ {
			out = append(out, metapb.DataGroup(i))
		}
		return out, nil
	}
	return nil, fmt.Errorf("learn the data groups: %w", last)
}

// printWatch prints one response: JSON, one object per line, or one line
// per event.
func (a *app) printWatch(resp *metapb.WatchResponse, showProgress bool) error {
	if a.output == "json" {
		b, err := protojson.Marshal(resp)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(a.out, string(b))
		return err
	}
	if resp.Progress && showProgress {
		fmt.Fprintf(a.out, "progress %v\n", resp.Revisions)
	}
	for _, ev := range resp.Events {
		head := fmt.Sprintf("%s %s@%d", ev.Type, ev.Group, ev.Revision)
		switch {
		case ev.Kv != nil && ev.Type == metapb.WatchEvent_PUT:
			fmt.Fprintf(a.out, "%s %s %s\n", head, ev.Kv.Key, ev.Kv.Value)
		case ev.Kv != nil:
			fmt.Fprintf(a.out, "%s %s\n", head, ev.Kv.Key)
		case ev.Resource != nil:
			fmt.Fprintf(a.out, "%s %s/%s %s\n", head, kindWordOf(ev.Resource.Kind), ev.Resource.Name, specJSON(ev.Resource))
		case ev.Will != nil:
			fmt.Fprintf(a.out, "%s will %s %s\n", head, ev.Will.ClientId, strings.TrimPrefix(ev.Will.State.String(), "WILL_STATE_"))
		case ev.Broker != nil:
			fmt.Fprintf(a.out, "%s broker %s epoch %d %s\n", head, ev.Broker.BrokerId, ev.Broker.Epoch, strings.TrimPrefix(ev.Broker.Status.String(), "BROKER_STATUS_"))
		case ev.Assignment != nil:
			fmt.Fprintf(a.out, "%s connector %s on %q epoch %d\n", head, ev.Assignment.Connector, ev.Assignment.BrokerId, ev.Assignment.Epoch)
		default:
			fmt.Fprintln(a.out, head)
		}
	}
	return nil
}

func kindWordOf(k metapb.ResourceKind) string {
	for _, d := range kinds {
		if d.kind == k {
			return d.word
		}
	}
	return k.String()
}

func (a *app) brokerAPICommands() []*cobra.Command {
	return append(a.resourceCommands(), a.sessionCommand(), a.retainedCommand(), a.willCommand(), a.leaseCommand(), a.watchCommand())
}
