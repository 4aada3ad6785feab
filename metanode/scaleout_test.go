package metanode_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metamq/meta/controller"
	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify/poll"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fastPlacement makes membership and placement quick enough for tests.
func fastPlacement(opts metanodetest.Options) metanodetest.Options {
	configure := opts.Configure
	opts.Configure = func(cfg *metanode.Config) {
		cfg.ReconcileInterval = 200 * time.Millisecond
		cfg.ReportInterval = 200 * time.Millisecond
		if configure != nil {
			configure(cfg)
		}
	}
	ctl := opts.Controller
	opts.Controller = func(cfg *controller.Config) {
		cfg.PlacementInterval = 200 * time.Millisecond
		cfg.NodeTimeout = 2 * time.Second
		cfg.SpreadInterval = time.Second
		if ctl != nil {
			ctl(cfg)
		}
	}
	return opts
}

// placementState reads the controller's views.
func placementState(ctx context.Context, cl *client.Client) (*metapb.ListGroupsResponse, *metapb.ListNodesResponse, error) {
	gs, err := cl.ListGroups(ctx)
	if err != nil {
		return nil, nil, err
	}
	ns, err := cl.ListNodes(ctx)
	return gs, ns, err
}

// checkPlacement says what is wrong with the placement, or "": every group
// has exactly want replicas on distinct live nodes of the given set, all
// voters in its configuration, nothing moving, and replica counts per
// active node within one of each other. Two replicas of a group on one
// node is a failure at once (t.Fatal).
func checkPlacement(t *testing.T, gs *metapb.ListGroupsResponse, ns *metapb.ListNodesResponse, want int, nodes []string) string {
	t.Helper()
	count := map[string]int{}
	for _, g := range gs.Groups {
		seen := map[string]bool{}
		for _, r := range g.Replicas {
			if seen[r.Node] {
				t.Fatalf("%s has two replicas on %s: %v", g.Group, r.Node, g.Replicas)
			}
			seen[r.Node] = true
			count[r.Node]++
			if !slices.Contains(nodes, r.Node) {
				return fmt.Sprintf("%s has a replica on %s", g.Group, r.Node)
			}
			if r.Role != "voter" {
				return fmt.Sprintf("%s: %s is %q", g.Group, r.Node, r.Role)
			}
		}
		if g.Moving {
			return g.Group + " moving"
		}
		w := want
		if g.Group == metapb.MetadataGroup {
			w = min(int(gs.MetadataReplicationFactor), len(nodes))
		}
		if len(g.Replicas) != w {
			return fmt.Sprintf("%s has %d replicas, want %d", g.Group, len(g.Replicas), w)
		}
	}
	lo, hi := 1<<30, 0
	for _, n := range ns.Nodes {
		if n.State == "active" && slices.Contains(nodes, n.Id) {
			lo, hi = min(lo, count[n.Id]), max(hi, count[n.Id])
		}
	}
	if hi-lo > 1 {
		return fmt.Sprintf("replicas per node %v", count)
	}
	return ""
}

// waitPlacement waits until checkPlacement finds nothing wrong.
func waitPlacement(t *testing.T, cl *client.Client, want int, nodes []string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	poll.For(t, fmt.Sprintf("RF %d on %v, balanced", want, nodes), timeout, func() error {
		gs, ns, err := placementState(ctxT(t, 5*time.Second), cl)
		if err != nil {
			return err
		}
		return poll.Check(checkPlacement(t, gs, ns, want, nodes) == "", checkPlacement(t, gs, ns, want, nodes))
	})
	return time.Since(start)
}

// load writes unique keys until stopped and keeps the acknowledged ones.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	acked  sync.Map
	writes atomic.Int64
}

func startLoad(cl *client.Client, writers int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	for w := range writers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				k := fmt.Sprintf("w%d-%d", w, i)
				wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := cl.Put(wctx, &metapb.PutRequest{Key: []byte(k), Value: []byte(k)})
				wcancel()
				if err == nil {
					l.acked.Store(k, true)
					l.writes.Add(1)
				}
			}
		}()
	}
	return l
}

// stop ends the load and checks that every acknowledged write reads back.
func (l *load) stop(t *testing.T, cl *client.Client) {
	t.Helper()
	l.cancel()
	l.wg.Wait()
	if l.writes.Load() == 0 {
		t.Fatal("no write succeeded")
	}
	n := 0
	l.acked.Range(func(k, _ any) bool {
		if got, ok := get(t, cl, k.(string), lin); !ok || got != k.(string) {
			t.Fatalf("acknowledged write %s lost: got %q", k, got)
		}
		n++
		return true
	})
	t.Logf("%d acknowledged writes, all present", n)
}

// Nodes are a pool: a fourth node joins empty and the controller fills
// it (RF honoured, never two replicas of a group on one node, counts
// balanced within one); drained, it holds nothing and is removed; under
// load throughout, no acknowledged write is lost.
func TestAddDrainRemoveUnderLoad(t *testing.T) {
	c := metanodetest.Start(t, fastPlacement(metanodetest.Options{DataGroups: 4}))
	cl := c.Client("")
	waitPlacement(t, cl, 3, []string{"n1", "n2", "n3"}, 60*time.Second)
	l := startLoad(cl, 4)
	defer l.cancel()

	n4 := c.AddNode("n4")
	if _, err := cl.AddMember(ctxT(t, 20*time.Second), "n4", n4.Addr); err != nil {
		t.Fatalf("add member: %v", err)
	}
	if err := c.Join("n4"); err != nil {
		t.Fatalf("join: %v", err)
	}
	took := waitPlacement(t, cl, 3, []string{"n1", "n2", "n3", "n4"}, 120*time.Second)
	t.Logf("balanced over 4 nodes %s after the join", took.Round(time.Millisecond))

	if _, err := cl.RemoveMember(ctxT(t, 20*time.Second), "n4"); err == nil || !strings.Contains(err.Error(), "drain it first") {
		t.Fatalf("removing a live node that holds replicas: got %v, want a refusal saying to drain it", err)
	}
	if _, err := cl.DrainMember(ctxT(t, 20*time.Second), "n4", false); err != nil {
		t.Fatalf("drain: %v", err)
	}
	poll.For(t, "n4 drained", 120*time.Second, func() error {
		ns, err := cl.ListNodes(ctxT(t, 5*time.Second))
		if err != nil {
			return err
		}
		for _, n := range ns.Nodes {
			if n.Id == "n4" {
				return poll.Check(n.State == "drained", fmt.Sprintf("%s: %d replicas, %d leaders", n.State, n.Replicas, n.Leaders))
			}
		}
		return fmt.Errorf("n4 not listed")
	})
	waitPlacement(t, cl, 3, []string{"n1", "n2", "n3"}, 60*time.Second)
	if _, err := cl.RemoveMember(ctxT(t, 30*time.Second), "n4"); err != nil {
		t.Fatalf("remove the drained node: %v", err)
	}
	c.Forget("n4")
	l.stop(t, cl)
}

// groupsOn lists the groups whose records place a replica on node.
func groupsOn(t *testing.T, cl *client.Client, node string) []string {
	t.Helper()
	out := pickReplicas(t, cl, func(g, n string) (string, bool) { return g, n == node })
	sort.Strings(out)
	return out
}

// A member removed by force while it leads a group leaves it: the group's
// record drops it, it hands its leadership to a replica that stays, the
// new leader removes it, and its replica is deleted once it has left; the
// group keeps serving with RF voters.
func TestForceRemovedLeaderLeavesItsGroups(t *testing.T) {
	c := metanodetest.Start(t, fastPlacement(metanodetest.Options{Nodes: 4, DataGroups: 2}))
	cl := c.Client("")
	all := []string{"n1", "n2", "n3", "n4"}
	waitPlacement(t, cl, 3, all, 60*time.Second)
	on4 := groupsOn(t, cl, "n4")
	if len(on4) == 0 {
		t.Fatal("n4 hosts nothing")
	}
	g := on4[0]
	c.MakeLeader(g, "n4", 60*time.Second)
	if _, err := cl.ForceRemoveMember(ctxT(t, 30*time.Second), "n4"); err != nil {
		t.Fatalf("force remove n4 while it leads %s: %v", g, err)
	}
	took := waitPlacement(t, cl, 3, all[:3], 120*time.Second)
	t.Logf("n4's replicas re-created on the others %s after its removal", took.Round(time.Millisecond))
	poll.ForTrue(t, "n4 to delete its replicas", 60*time.Second, func() bool { return len(c.Running("n4").Status()) == 0 })
	c.Forget("n4")
	// A client that knew n4 may have a request in flight to it when it
	// stops (an unknown outcome, rightly); a new one does not.
	put(t, c.Client(""), "after", "v")
}

// A node that stays dead past the dead-node timeout has its replicas
// re-created on the survivors, within the timeout plus a bound (the
// figure is logged), and no acknowledged write is lost.
func TestDeadNodeIsReplaced(t *testing.T) {
	const timeout = 3 * time.Second
	c := metanodetest.Start(t, fastPlacement(metanodetest.Options{Nodes: 4, DataGroups: 2,
		Controller: func(cfg *controller.Config) { cfg.DeadNodeTimeout = timeout }}))
	cl := c.Client("")
	all := []string{"n1", "n2", "n3", "n4"}
	waitPlacement(t, cl, 3, all, 60*time.Second)
	l := startLoad(cl, 2)
	defer l.cancel()
	victim := "n4"
	if c.Leader(metapb.MetadataGroup) == victim {
		victim = "n3"
	}
	c.Crash(victim)
	start := time.Now()
	rest := slices.DeleteFunc(slices.Clone(all), func(id string) bool { return id == victim })
	poll.For(t, "the dead node's replicas re-created", timeout+120*time.Second, func() error {
		gs, ns, err := placementState(ctxT(t, 5*time.Second), cl)
		if err != nil {
			return err
		}
		return poll.Check(checkPlacement(t, gs, ns, 3, rest) == "", checkPlacement(t, gs, ns, 3, rest))
	})
	t.Logf("replicas of dead %s re-created %s after the crash (dead-node timeout %s)", victim, time.Since(start).Round(time.Millisecond), timeout)
	l.stop(t, cl)
}

// The controller (metadata-0's leader) is killed at each step of a move:
// after the record changed, while the new replica is a non-voter, and
// while the group has four voters. Each time the move completes under
// the next controller (the group's leader follows the record, whoever
// leads metadata-0), and no group's configuration ever has fewer than RF
// voters.
func TestMoveSurvivesControllerCrashAtEachStep(t *testing.T) {
	for _, step := range []string{"record", "nonvoter", "voters"} {
		t.Run(step, func(t *testing.T) {
			c := metanodetest.Start(t, fastPlacement(metanodetest.Options{Nodes: 4, DataGroups: 2,
				Configure: func(cfg *metanode.Config) { cfg.ReconcileInterval = 1500 * time.Millisecond },
				Controller: func(cfg *controller.Config) {
					cfg.DeadNodeTimeout = time.Hour
					cfg.MaxReplicaMoves = 1
				}}))
			cl := c.Client("")
			all := []string{"n1", "n2", "n3", "n4"}
			waitPlacement(t, cl, 3, all, 60*time.Second)
			// Drain the node that does not lead metadata-0 and hosts the
			// most, so that moves start; watch the first moving group.
			victim := ""
			for _, id := range all {
				if id != c.Leader(metapb.MetadataGroup) && (victim == "" || len(groupsOn(t, cl, id)) > len(groupsOn(t, cl, victim))) {
					victim = id
				}
			}
			stop := watchVoters(t, c, 3)
			defer stop()
			if _, err := cl.DrainMember(ctxT(t, 20*time.Second), victim, false); err != nil {
				t.Fatal(err)
			}
			crashed := ""
			poll.For(t, "a move at step "+step, 60*time.Second, func() error {
				gs, err := cl.ListGroups(ctxT(t, 5*time.Second))
				if err != nil {
					return err
				}
				for _, g := range gs.Groups {
					if !g.Moving {
						continue
					}
					roles := map[string]int{}
					for _, r := range g.Replicas {
						roles[r.Role]++
					}
					at := (step == "record" && roles[""] > 0) || (step == "nonvoter" && roles["nonvoter"] > 0) ||
						(step == "voters" && roles["voter"] == len(g.Replicas))
					if at {
						crashed = c.Leader(metapb.MetadataGroup)
						t.Logf("%s moving (%v); crashing the controller on %s", g.Group, g.Replicas, crashed)
						c.Crash(crashed)
						return nil
					}
				}
				return fmt.Errorf("no move at that step yet")
			})
			time.AfterFunc(2*time.Second, func() {
				if err := c.Restart(crashed); err != nil {
					t.Errorf("restart %s: %v", crashed, err)
				}
			})
			rest := slices.DeleteFunc(slices.Clone(all), func(id string) bool { return id == victim })
			took := waitPlacement(t, cl, 3, rest, 180*time.Second)
			t.Logf("drain of %s complete %s after the controller crashed at step %s", victim, took.Round(time.Millisecond), step)
		})
	}
}

// watchVoters fails the test if any group's configuration, as its leader
// has it, ever has fewer than rf voters; it stops when stop is called.
func watchVoters(t *testing.T, c *metanodetest.Cluster, rf int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			for _, id := range c.IDs() {
				node := c.Running(id)
				if node == nil {
					continue
				}
				for _, st := range node.Status() {
					if st.State != "Leader" {
						continue
					}
					voters := 0
					for _, m := range st.Members {
						if m.Voter {
							voters++
						}
					}
					if voters < rf {
						t.Errorf("%s led by %s has %d voters: %v", st.Group, id, voters, st.Members)
						return
					}
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// The Go client follows the directory: configured with n1 alone, it keeps
// working once n1, n2 and n3 are drained, removed and gone, and n4..n6
// hold everything.
func TestClientFollowsTheDirectory(t *testing.T) {
	c := metanodetest.Start(t, fastPlacement(metanodetest.Options{DataGroups: 2}))
	cl, err := client.New(client.Config{Endpoints: []string{c.Get("n1").Addr}, Dialer: c.Net.Dialer(metanodetest.Client),
		RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	admin := c.Client("")
	for _, id := range []string{"n4", "n5", "n6"} {
		n := c.AddNode(id)
		if _, err := admin.AddMember(ctxT(t, 20*time.Second), id, n.Addr); err != nil {
			t.Fatal(err)
		}
		if err := c.Join(id); err != nil {
			t.Fatal(err)
		}
	}
	put(t, cl, "before", "1")
	for _, id := range []string{"n1", "n2", "n3"} {
		if _, err := admin.DrainMember(ctxT(t, 20*time.Second), id, false); err != nil {
			t.Fatal(err)
		}
	}
	waitPlacement(t, admin, 3, []string{"n4", "n5", "n6"}, 240*time.Second)
	for _, id := range []string{"n1", "n2", "n3"} {
		if _, err := c.Client("n4").RemoveMember(ctxT(t, 30*time.Second), id); err != nil {
			t.Fatalf("remove %s: %v", id, err)
		}
		c.Forget(id)
	}
	// A request in flight to a node as it stops is rightly an unknown
	// outcome; the next ones go to the nodes that are left.
	var last error
	poll.For(t, "a put through the client that only knew n1", 30*time.Second, func() error {
		_, last = cl.Put(ctxT(t, 10*time.Second), &metapb.PutRequest{Key: []byte("after"), Value: []byte("2")})
		return last
	})
	if got, ok := get(t, cl, "before", lin); !ok || got != "1" {
		t.Fatalf("before: got %q (%v)", got, ok)
	}
	t.Logf("the client now knows %v", cl.Endpoints())
	// The directory's ranges survived every move: each kind's map tiles
	// the hash space, and the groups' ownership records say the same.
	gs, err := cl.ListGroups(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	maps := map[string]metapb.RangeMap{}
	for _, g := range gs.Groups {
		for _, r := range g.Ranges {
			maps[g.Kind] = append(maps[g.Kind], metapb.Range{Lo: r.Lo, Hi: r.Hi, Group: g.Group, Version: r.Version})
		}
	}
	for _, kind := range []string{"data", "offset"} {
		if m := maps[kind]; m.Sorted() == nil {
			t.Fatalf("%s ranges do not tile the hash space: %v", kind, m)
		}
	}
}

// A watch served from a node's own replicas follows them when they move
// away: drained, the node no longer hosts its groups (their replicas there
// stop hearing from them), and the watch, pinned to that node, must
// still deliver every later change (the node's replicas close as they
// leave, which ends the watch; the client resumes it from what it
// delivered, through the node, which now forwards).
func TestWatchFollowsGroupsOffADrainedNode(t *testing.T) {
	c := metanodetest.Start(t, fastPlacement(metanodetest.Options{DataGroups: 4}))
	cl := c.Client("")
	waitPlacement(t, cl, 3, []string{"n1", "n2", "n3"}, 60*time.Second)
	n4 := c.AddNode("n4")
	if _, err := cl.AddMember(ctxT(t, 20*time.Second), "n4", n4.Addr); err != nil {
		t.Fatalf("add member: %v", err)
	}
	if err := c.Join("n4"); err != nil {
		t.Fatalf("join: %v", err)
	}
	waitPlacement(t, cl, 3, []string{"n1", "n2", "n3", "n4"}, 120*time.Second)
	var local []string
	for _, g := range groupsOn(t, cl, "n4") {
		if strings.HasPrefix(g, "data-") {
			local = append(local, g)
		}
	}
	if len(local) == 0 {
		t.Fatal("the placement gave n4 no data group: the watch would read none locally")
	}
	t.Logf("n4 hosts %v", local)

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	got, started := watchKeys(t, ctx, c.Client("n4"), "m/")
	started()

	if _, err := cl.DrainMember(ctxT(t, 20*time.Second), "n4", false); err != nil {
		t.Fatalf("drain: %v", err)
	}
	poll.For(t, "n4 drained", 120*time.Second, func() error {
		if on := groupsOn(t, cl, "n4"); len(on) > 0 {
			return fmt.Errorf("n4 still hosts %v", on)
		}
		return nil
	})
	var want []string
	for i := range 20 {
		k := fmt.Sprintf("m/%02d", i)
		poll.For(t, "put "+k, 30*time.Second, func() error {
			_, err := cl.Put(ctxT(t, 10*time.Second), &metapb.PutRequest{Key: []byte(k), Value: []byte("v")})
			return err
		})
		want = append(want, k)
	}
	seen := map[string]bool{}
	for len(seen) < len(want) {
		select {
		case k := <-got:
			seen[k] = true // a put retried after an unknown outcome may apply twice
		case <-ctx.Done():
			t.Fatalf("the watch through n4 delivered %d of %d puts made after its groups moved away", len(seen), len(want))
		}
	}
}

// An operator moves a replica by hand (metactl group move): the leader's
// replica of a group goes to a node that holds none while writes go
// on; the group's configuration follows (the old leader hands its
// leadership off and leaves), no acknowledged write is lost, and moves
// that cannot be done are refused naming the field at fault.
func TestMoveReplica(t *testing.T) {
	// Five groups of three replicas on four nodes: three nodes hold four
	// and one holds three. Moving a replica from a node with four to the
	// one with three leaves the placement balanced, so the controller has
	// no reason to move it back while the test watches the old replica go.
	c := metanodetest.Start(t, fastPlacement(metanodetest.Options{Nodes: 4, DataGroups: 3, Metrics: true}))
	cl := c.Client("")
	all := []string{"n1", "n2", "n3", "n4"}
	waitPlacement(t, cl, 3, all, 60*time.Second)
	count := map[string]int{}
	for _, id := range pickReplicas(t, cl, func(_, node string) (string, bool) { return node, true }) {
		count[id]++
	}
	to := slices.MinFunc(all, func(a, b string) int { return count[a] - count[b] })
	g := ""
	for _, name := range []string{"data-0", "data-1", "data-2", "offset-0"} {
		if !slices.Contains(groupsHolders(t, cl, name), to) {
			g = name
			break
		}
	}
	if g == "" {
		t.Fatalf("replicas per node %v: %s holds every group", count, to)
	}
	holders := groupsHolders(t, cl, g)
	from := c.Leader(g)
	if from == "" || count[from] != count[to]+1 {
		t.Fatalf("group %q led by %q, replicas per node %v: want a group %s does not hold, led by a node with one replica more", g, from, count, to)
	}
	other := holders[0]
	if other == from {
		other = holders[1]
	}
	for _, tt := range []struct{ group, from, to, field string }{
		{"data-9", from, to, "group"},
		{g, to, from, "from"},
		{g, from, other, "to"},
		{g, from, "n9", "to"},
		{"", from, to, "group"},
		{g, from, "", "to"},
	} {
		_, err := cl.MoveReplica(ctxT(t, 10*time.Second), tt.group, tt.from, tt.to)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("move %q from %q to %q: got %v, want InvalidArgument naming %s", tt.group, tt.from, tt.to, err, tt.field)
		}
	}

	// The move leaves from with a replica fewer than the others, and the
	// controller may well place data-0 on it again at once (a new, empty
	// replica): that its old replica was deleted shows in its counter,
	// not in whether it hosts data-0 at some later moment.
	deleted := func() float64 {
		return value(scrape(t, c.Running(from).MetricsAddr()), "meta_group_replicas_deleted_total", map[string]string{"group": g})
	}
	before := deleted()
	l := startLoad(cl, 2)
	defer l.cancel()
	resp, err := cl.MoveReplica(ctxT(t, 20*time.Second), g, from, to)
	if err != nil {
		t.Fatalf("move %s's leader replica from %s to %s: %v", g, from, to, err)
	}
	if !slices.Contains(resp.Replicas, to) || slices.Contains(resp.Replicas, from) {
		t.Fatalf("move answered replicas %v, want %s in and %s out", resp.Replicas, to, from)
	}
	poll.For(t, "the move done", 120*time.Second, func() error {
		gs, err := cl.ListGroups(ctxT(t, 5*time.Second))
		if err != nil {
			return err
		}
		for _, gi := range gs.Groups {
			if gi.Group == g {
				return poll.Check(gi.ConfVer >= resp.ConfVer && !gi.Moving && gi.Leader != "" && gi.Leader != from,
					fmt.Sprintf("conf_ver %d moving %t leader %s replicas %v", gi.ConfVer, gi.Moving, gi.Leader, gi.Replicas))
			}
		}
		return fmt.Errorf("%s not listed", g)
	})
	poll.ForTrue(t, from+" to delete its replica of "+g, 60*time.Second, func() bool { return deleted() > before })
	l.stop(t, cl)
}

// groupsHolders lists the nodes group's record places a replica on.
func groupsHolders(t *testing.T, cl *client.Client, group string) []string {
	t.Helper()
	out := pickReplicas(t, cl, func(g, node string) (string, bool) { return node, g == group })
	if len(out) == 0 {
		t.Fatalf("%s not listed", group)
	}
	return out
}

// pickReplicas lists, in the directory's order, what pick returns for each
// replica of each group where it also returns true.
func pickReplicas(t *testing.T, cl *client.Client, pick func(group, node string) (string, bool)) []string {
	t.Helper()
	gs, err := cl.ListGroups(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, g := range gs.Groups {
		for _, r := range g.Replicas {
			if v, ok := pick(g.Group, r.Node); ok {
				out = append(out, v)
			}
		}
	}
	return out
}
