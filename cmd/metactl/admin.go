package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

func (a *app) offsetsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "offsets", Short: "Consumer offsets"}
	var metadata string
	var stale bool
	commit := &cobra.Command{
		Use: "commit GROUP TOPIC PARTITION OFFSET", Short: "Commit an offset", Args: cobra.ExactArgs(4),
		RunE: func(_ *cobra.Command, args []string) error {
			part, err := intArg("PARTITION", args[2], 32)
			if err != nil {
				return err
			}
			off, err := intArg("OFFSET", args[3], 64)
			if err != nil {
				return err
			}
			return show(a, func(ctx context.Context, c *client.Client) (*metapb.CommitOffsetsResponse, error) {
				return c.CommitOffsets(ctx, &metapb.CommitOffsetsRequest{Offsets: []*metapb.OffsetCommit{
					{Group: args[0], Topic: args[1], Partition: int32(part), Offset: off, Metadata: metadata}}})
			}, func(*metapb.CommitOffsetsResponse) { fmt.Fprintln(a.out, "OK") })
		},
	}
	commit.Flags().StringVar(&metadata, "metadata", "", "metadata stored with the offset")
	fetch := &cobra.Command{
		Use: "fetch GROUP TOPIC PARTITION", Short: "Print a committed offset", Args: cobra.ExactArgs(3),
		RunE: func(_ *cobra.Command, args []string) error {
			part, err := intArg("PARTITION", args[2], 32)
			if err != nil {
				return err
			}
			return showOr(a, func(ctx context.Context, c *client.Client) (*metapb.FetchOffsetsResponse, error) {
				return c.FetchOffsets(ctx, &metapb.FetchOffsetsRequest{Consistency: consistency(stale),
					Partitions: []*metapb.TopicPartition{{Group: args[0], Topic: args[1], Partition: int32(part)}}})
			}, func(resp *metapb.FetchOffsetsResponse) error {
				if resp.Offsets[0].Found {
					return nil
				}
				return fmt.Errorf("no offset committed for %s/%s/%d", args[0], args[1], part)
			}, func(resp *metapb.FetchOffsetsResponse) { fmt.Fprintln(a.out, resp.Offsets[0].Offset) })
		},
	}
	staleFlag(fetch.Flags(), &stale)
	del := &cobra.Command{
		Use: "delete GROUP", Short: "Delete every offset of a consumer group", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return show(a, func(ctx context.Context, c *client.Client) (*metapb.DeleteGroupResponse, error) {
				return c.DeleteGroup(ctx, &metapb.DeleteGroupRequest{Group: args[0]})
			}, func(resp *metapb.DeleteGroupResponse) { fmt.Fprintf(a.out, "deleted %d partitions\n", resp.Deleted) })
		},
	}
	cmd.AddCommand(commit, fetch, del)
	return cmd
}

// statusCommand asks every endpoint for its view and prints them side by
// side per group.
func (a *app) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use: "status", Short: "Each group: leader, term, commit and applied index per node; each node: feature level and the cluster version it sees; halted replicas and why", Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			return a.with(func(ctx context.Context, c *client.Client) error {
				eps := c.Endpoints()
				views := make([]*metapb.StatusResponse, len(eps))
				errs := make([]error, len(eps))
				var wg sync.WaitGroup
				for i, ep := range eps {
					wg.Add(1)
					go func() {
						defer wg.Done()
						views[i], errs[i] = c.Status(ctx, ep)
					}()
				}
				wg.Wait()
				type nodeView struct {
					Endpoint string                 `json:"endpoint"`
					Error    string                 `json:"error,omitempty"`
					Status   *metapb.StatusResponse `json:"status,omitempty"`
				}
				var out []nodeView
				ok := 0
				for i, ep := range eps {
					v := nodeView{Endpoint: ep, Status: views[i]}
					if errs[i] != nil {
						v.Error = oneLine(errs[i])
					} else {
						ok++
					}
					out = append(out, v)
				}
				if ok == 0 {
					return fmt.Errorf("no endpoint answered: %s", oneLine(errs[0]))
				}
				return a.emitJSON(out, func() {
					a.table("GROUP\tNODE\tSTATE\tLEADER\tTERM\tCOMMIT\tAPPLIED\tLAST LOG\tSNAPSHOT", func(tw io.Writer) {
						rows := map[string][]string{}
						var groups []string
						for _, v := range views {
							if v == nil {
								continue
							}
							for _, g := range v.Groups {
								if _, seen := rows[g.Group]; !seen {
									groups = append(groups, g.Group)
								}
								rows[g.Group] = append(rows[g.Group], fmt.Sprintf("%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d",
									g.Group, v.NodeId, g.State, g.LeaderId, g.Term, g.CommitIndex, g.AppliedIndex, g.LastLogIndex, g.LastSnapshotIndex))
							}
						}
						for _, g := range groups {
							for _, r := range rows[g] {
								fmt.Fprintln(tw, r)
							}
						}
					})
					// The cluster version each node sees beside its own
					// feature level: a rolling upgrade is done once every
					// node shows the new level as the cluster version.
					a.table("NODE\tRELEASE\tFEATURE LEVEL\tCLUSTER VERSION", func(tw io.Writer) {
						for _, v := range views {
							if v != nil {
								fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", v.NodeId, v.Version, v.FeatureLevel, v.ClusterVersion)
							}
						}
					})
					a.printHalted(views)
					for i, e := range errs {
						if e != nil {
							fmt.Fprintf(a.out, "%s: unreachable: %s\n", eps[i], oneLine(e))
						}
					}
				})
			})
		},
	}
}

// printHalted prints, when some node reports one, a table of the
// replicas that halted (stopped applying, serve no read) with what
// halted them: a fence after a hash check (corrupt), a storage failure,
// an entry the replica cannot apply.
func (a *app) printHalted(views []*metapb.StatusResponse) {
	if !slices.ContainsFunc(views, func(v *metapb.StatusResponse) bool { return len(v.GetHalted()) > 0 }) {
		return
	}
	a.table("HALTED GROUP\tNODE\tKIND\tAT ENTRY\tREASON", func(tw io.Writer) {
		for _, v := range views {
			for _, h := range v.GetHalted() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", h.Group, v.NodeId, h.Kind, h.Index, strings.ReplaceAll(h.Reason, "\n", " "))
			}
		}
	})
}

func (a *app) memberCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "member", Short: "Cluster membership"}
	printMembers := func(ms []*metapb.Member) {
		sort.Slice(ms, func(i, j int) bool { return ms[i].Id < ms[j].Id })
		a.table("ID\tADDRESS\tZONE\tDRAINING", func(tw io.Writer) {
			for _, m := range ms {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\n", m.Id, m.Addr, m.Zone, m.Draining)
			}
		})
	}
	list := noArgs(a, "list", "List members", (*client.Client).Members, func(resp *metapb.MembersResponse) { printMembers(resp.Members) })
	var zone string
	add := &cobra.Command{
		Use: "add ID ADDR", Short: "Add an empty node to the pool (then start it with --join); the controller fills it", Args: cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			return show(a, func(ctx context.Context, c *client.Client) (*metapb.AddMemberResponse, error) {
				return c.AddMemberInZone(ctx, args[0], args[1], zone)
			}, func(resp *metapb.AddMemberResponse) { printMembers(resp.Members) })
		},
	}
	add.Flags().StringVar(&zone, "zone", "", "the node's failure-domain label (replicas of a group are spread over zones)")
	var force bool
	remove := &cobra.Command{
		Use: "remove ID", Short: "Remove a drained (or dead) node; --force removes any, its replicas are re-created elsewhere", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return show(a, func(ctx context.Context, c *client.Client) (*metapb.RemoveMemberResponse, error) {
				if force {
					return c.ForceRemoveMember(ctx, args[0])
				}
				return c.RemoveMember(ctx, args[0])
			}, func(resp *metapb.RemoveMemberResponse) { printMembers(resp.Members) })
		},
	}
	remove.Flags().BoolVar(&force, "force", false, "remove a live node that still holds replicas or leaderships")
	var undo, noWait bool
	drain := &cobra.Command{
		Use: "drain ID", Short: "Move every replica and leadership off a node, and wait until it holds none", Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return a.with(func(ctx context.Context, c *client.Client) error {
				resp, err := c.DrainMember(ctx, args[0], undo)
				if err != nil {
					return err
				}
				if undo || noWait {
					return a.emit(resp, func() { printMembers(resp.Members) })
				}
				return awaitOne(a, ctx, args[0]+" not drained yet", "node list", func() ([]*metapb.NodeInfo, error) {
					ns, err := c.ListNodes(ctx)
					return ns.GetNodes(), err
				}, (*metapb.NodeInfo).GetId, args[0], func(n *metapb.NodeInfo) (bool, error) {
					if n.State == "drained" {
						return true, a.emit(n, func() { fmt.Fprintf(a.out, "%s drained\n", n.Id) })
					}
					a.progress("%s: %d replicas, %d leaderships left", n.Id, n.Replicas, n.Leaders)
					return false, nil
				})
			})
		},
	}
	drain.Flags().BoolVar(&undo, "undo", false, "make the node active again")
	drain.Flags().BoolVar(&noWait, "no-wait", false, "return once the drain has started")
	cmd.AddCommand(list, add, remove, drain)
	return cmd
}

func (a *app) groupCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "group", Short: "Groups: where their replicas are"}
	list := noArgs(a, "list", "Each group: kind, replicas, leader, applied index, bytes, ops/s", (*client.Client).ListGroups,
		func(resp *metapb.ListGroupsResponse) {
			a.table("GROUP\tKIND\tREPLICAS\tLEADER\tAPPLIED\tBYTES\tOPS/S\tVERSION\tSTATE\tRANGES", func(tw io.Writer) {
				for _, g := range resp.Groups {
					var rs []string
					for _, r := range g.Replicas {
						s := r.Node
						if r.Role != "voter" {
							s += "(" + cmp.Or(r.Role, "adding") + ")"
						}
						rs = append(rs, s)
					}
					st := g.State
					if g.Moving {
						st += ",moving"
					}
					if g.SplitChild != "" {
						st += ",splitting(" + g.SplitPhase + "->" + g.SplitChild + ")"
					}
					if g.SplitError != "" {
						st += ",split-stuck(" + g.SplitError + ")"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%.0f\t%d\t%s\t%s\n", g.Group, g.Kind, strings.Join(rs, ","),
						g.Leader, g.AppliedIndex, g.Bytes, g.OpsPerSec, g.ConfVer, st, cmp.Or(rangesText(g), "-"))
				}
			})
		})
	var from, to string
	var noWait bool
	move := &cobra.Command{
		Use:   "move GROUP --from NODE --to NODE",
		Short: "Move a group's replica from one node to another, and wait until the group's configuration follows",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return a.with(func(ctx context.Context, c *client.Client) error {
				resp, err := c.MoveReplica(ctx, args[0], from, to)
				if err != nil {
					return err
				}
				if noWait {
					return a.emit(resp, func() { fmt.Fprintf(a.out, "%s: replicas %v (version %d)\n", args[0], resp.Replicas, resp.ConfVer) })
				}
				return awaitOne(a, ctx, args[0]+" still moving", "group list", func() ([]*metapb.GroupInfo, error) {
					gs, err := c.ListGroups(ctx)
					return gs.GetGroups(), err
				}, (*metapb.GroupInfo).GetGroup, args[0], func(g *metapb.GroupInfo) (bool, error) {
					if g.ConfVer >= resp.ConfVer && !g.Moving {
						return true, a.emit(g, func() {
							rs := replicaIDs(g)
							if g.ConfVer > resp.ConfVer && (!slices.Contains(rs, to) || slices.Contains(rs, from)) {
								fmt.Fprintf(a.out, "%s moved, then placement changed it again to keep replica counts per node within one: replicas %v, leader %s\n", g.Group, rs, g.Leader)
								return
							}
							fmt.Fprintf(a.out, "%s moved: replicas %v, leader %s\n", g.Group, rs, g.Leader)
						})
					}
					a.progress("%s: replicas %v, leader %s, moving", g.Group, replicaIDs(g), g.Leader)
					return false, nil
				})
			})
		},
	}
	move.Flags().StringVar(&from, "from", "", "the node that gives up its replica (required)")
	move.Flags().StringVar(&to, "to", "", "the node that takes it: a live, active member without one (required)")
	move.Flags().BoolVar(&noWait, "no-wait", false, "return once the directory records the move")
	_ = move.MarkFlagRequired("from")
	_ = move.MarkFlagRequired("to")
	cmd.AddCommand(list, move, a.splitCommand())
	return cmd
}

func (a *app) splitCommand() *cobra.Command {
	var at string
	var noWait, abort bool
	split := &cobra.Command{
		Use:   "split GROUP [--at POINT] | split --abort GROUP",
		Short: "Split a data or offset group online: a new group takes the upper part of one of its ranges; waits until it is done",
		Long: `Split a data or offset group online: a new group takes the upper part of one
of its ranges (from --at), and the command waits until the split is done.

--abort GROUP aborts the split of GROUP under way, which is possible only
before its fence (phases prepared and copied): it returns once the group's
log refuses the fence, then waits until the new group is deleted and the
group holds its ranges as before. Once the split passed its fence it
cannot abort (SPLIT_FENCED) and goes on to its end.`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if abort {
				if at != "" {
					return fmt.Errorf("--at: not with --abort")
				}
				return a.abortSplit(args[0], noWait)
			}
			var point uint64
			if at != "" {
				p, err := strconv.ParseUint(at, 0, 64)
				if err != nil || p == 0 || p >= metapb.HashSpace {
					return fmt.Errorf("--at: %q is not a point of the route hash space (1..%#x, decimal or 0x hex)", at, metapb.HashSpace-1)
				}
				point = p
			}
			return a.with(func(ctx context.Context, c *client.Client) error {
				resp, err := c.SplitGroup(ctx, args[0], point)
				if err != nil {
					return err
				}
				if noWait {
					return a.emit(resp, func() {
						fmt.Fprintf(a.out, "%s splitting: %s takes [%#x,%#x)@%d\n", args[0], resp.Child, resp.Range.Lo, resp.Range.Hi, resp.Range.Version)
					})
				}
				return a.await(ctx, args[0]+" still splitting", "group list", func() (bool, error) {
					gs, err := c.ListGroups(ctx)
					if err != nil {
						return false, nil
					}
					parent, child := gs.Find(args[0]), gs.Find(resp.Child)
					if parent != nil && parent.SplitError != "" {
						return false, fmt.Errorf("%s: the split gave up, its moving range stays fenced: %s", args[0], parent.SplitError)
					}
					if parent == nil || child == nil || parent.SplitChild != "" || child.State != "active" {
						if parent != nil {
							a.progress("%s: splitting, phase %s", args[0], cmp.Or(parent.SplitPhase, "-"))
						}
						return false, nil
					}
					return true, a.emit(&metapb.ListGroupsResponse{DirectoryVersion: gs.DirectoryVersion, Groups: []*metapb.GroupInfo{parent, child}}, func() {
						fmt.Fprintf(a.out, "%s split: %s now holds %s, %s holds %s\n", args[0], args[0], rangesText(parent), child.Group, rangesText(child))
					})
				})
			})
		},
	}
	split.Flags().StringVar(&at, "at", "", "the route hash where the new group's range starts (default: the middle of the group's widest range)")
	split.Flags().BoolVar(&noWait, "no-wait", false, "return once the split is recorded (with --abort: once the abort is certain)")
	split.Flags().BoolVar(&abort, "abort", false, "abort the split of GROUP under way (only before its fence)")
	return split
}

// abortSplit aborts the split of group and, unless noWait, waits until
// the new group is deleted and the group holds no split.
func (a *app) abortSplit(group string, noWait bool) error {
	return a.with(func(ctx context.Context, c *client.Client) error {
		resp, err := c.AbortSplit(ctx, group)
		if err != nil {
			return err
		}
		if noWait {
			return a.emit(resp, func() { fmt.Fprintf(a.out, "%s: split aborted; %s being deleted\n", group, resp.Child) })
		}
		return a.await(ctx, group+" still aborting its split", "group list", func() (bool, error) {
			gs, err := c.ListGroups(ctx)
			if err != nil {
				return false, nil
			}
			parent, child := gs.Find(group), gs.Find(resp.Child)
			if parent == nil || parent.SplitChild != "" || child != nil && (child.State != "deleting" || len(child.Replicas) > 0) {
				if parent != nil {
					a.progress("%s: aborting its split, phase %s", group, cmp.Or(parent.SplitPhase, "-"))
				}
				return false, nil
			}
			return true, a.emit(&metapb.ListGroupsResponse{DirectoryVersion: gs.DirectoryVersion, Groups: []*metapb.GroupInfo{parent}}, func() {
				fmt.Fprintf(a.out, "%s: split aborted, %s deleted; %s holds %s\n", group, resp.Child, group, rangesText(parent))
			})
		})
	})
}

// rangesText is a group's ranges as [lo,hi)@version, comma-separated.
func rangesText(g *metapb.GroupInfo) string {
	var out []string
	for _, r := range g.Ranges {
		out = append(out, fmt.Sprintf("[%#x,%#x)@%d", r.Lo, r.Hi, r.Version))
	}
	return strings.Join(out, ",")
}

func replicaIDs(g *metapb.GroupInfo) []string {
	var out []string
	for _, r := range g.Replicas {
		out = append(out, r.Node)
	}
	return out
}

// await polls done once a second until it reports true or fails, or ctx
// ends (then: "WHAT (ctx error): see metactl SEE; raise --timeout ...").
func (a *app) await(ctx context.Context, what, see string, done func() (bool, error)) error {
	for {
		ok, err := done()
		if ok || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s (%w): see metactl %s; raise --timeout to wait longer", what, ctx.Err(), see)
		case <-time.After(time.Second):
		}
	}
}

// awaitOne is await for one item of a listing: each second it lists the
// items (a listing that fails counts as not yet) and asks done about the
// one whose key is key.
func awaitOne[T any](a *app, ctx context.Context, what, see string, list func() ([]T, error), keyOf func(T) string, key string, done func(T) (bool, error)) error {
	return a.await(ctx, what, see, func() (bool, error) {
		items, err := list()
		if err != nil {
			return false, nil
		}
		for _, it := range items {
			if keyOf(it) == key {
				return done(it)
			}
		}
		return false, nil
	})
}

// progress prints a waiting command's progress on stderr (text output
// only), each line once: a poll that sees no change prints nothing.
func (a *app) progress(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if a.output == "text" && line != a.progressed {
		a.progressed = line
		fmt.Fprintln(a.errOut, line)
	}
}

func (a *app) nodeCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Nodes: what each holds"}
	list := noArgs(a, "list", "Each node: replicas, leaders, bytes, zone, state", (*client.Client).ListNodes, func(resp *metapb.ListNodesResponse) {
		a.table("NODE\tADDRESS\tZONE\tSTATE\tALIVE\tREPLICAS\tLEADERS\tBYTES", func(tw io.Writer) {
			for _, n := range resp.Nodes {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%d\t%d\t%d\n", n.Id, n.Addr, n.Zone, n.State, n.Alive, n.Replicas, n.Leaders, n.Bytes)
			}
		})
	})
	cmd.AddCommand(list)
	return cmd
}

func (a *app) leaderCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "leader", Short: "Group leadership"}
	transfer := &cobra.Command{
		Use: "transfer GROUP [NODE]", Short: "Move a group's leadership (to NODE, or to the best follower)", Args: cobra.RangeArgs(1, 2),
		RunE: func(_ *cobra.Command, args []string) error {
			return show(a, func(ctx context.Context, c *client.Client) (*metapb.TransferLeaderResponse, error) {
				return c.TransferLeader(ctx, args[0], optArg(args, 1))
			}, func(resp *metapb.TransferLeaderResponse) {
				fmt.Fprintf(a.out, "%s leader: %s\n", args[0], resp.LeaderId)
			})
		},
	}
	cmd.AddCommand(transfer)
	return cmd
}
