package metanode_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/metamq/meta/controller"
	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/rpc/transport/raftpb"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/verify/poll"
	"github.com/metamq/meta/verify/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyTestMain(m) }

func ctxT(t *testing.T, d time.Duration) context.Context { t.Helper(); return testkit.Context(t, d) }

func put(t *testing.T, c *client.Client, k, v string) {
	t.Helper()
	if _, err := c.Put(ctxT(t, 20*time.Second), &metapb.PutRequest{Key: []byte(k), Value: []byte(v)}); err != nil {
		t.Fatalf("put %s=%s: %v", k, v, err)
	}
}

func get(t *testing.T, c *client.Client, k string, consistency metapb.ReadConsistency) (string, bool) {
	t.Helper()
	resp, err := c.Get(ctxT(t, 20*time.Second), &metapb.GetRequest{Key: []byte(k), Consistency: consistency})
	if err != nil {
		t.Fatalf("get %s: %v", k, err)
	}
	if resp.Kv == nil {
		return "", false
	}
	return string(resp.Kv.Value), true
}

const lin = metapb.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE

func followerOf(t *testing.T, c *metanodetest.Cluster, group string, not ...string) string {
	t.Helper()
	leader := c.WaitLeader(group, 30*time.Second)
	for _, id := range c.IDs() {
		if id != leader && c.Running(id) != nil && !slices.Contains(not, id) {
			return id
		}
	}
	t.Fatalf("no follower of %s", group)
	return ""
}

// Three nodes started at the same moment form exactly one cluster: one
// cluster id, every group has one leader that everybody agrees on, and the
// member list holds all three.
func TestFormationAllAtOnce(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{OffsetGroups: 2, DataGroups: 2})
	ids := map[string]bool{}
	for _, id := range c.IDs() {
		ids[c.Running(id).ClusterID()] = true
	}
	if len(ids) != 1 {
		t.Fatalf("got cluster ids %v, want exactly one", ids)
	}
	for _, g := range metapb.Groups(2, 2) {
		c.WaitLeader(g, 30*time.Second)
	}
	ms, err := c.Client("").Members(ctxT(t, 20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms.Members) != 3 {
		t.Fatalf("got %d members, want 3: %v", len(ms.Members), ms.Members)
	}
}

// A write sent to a follower is forwarded to the leader; a linearizable
// read at another node sees it at once.
func TestWriteThroughFollowerReadElsewhere(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{})
	g := metapb.DataGroupFor([]byte("k"), 1)
	leader := c.WaitLeader(g, 30*time.Second)
	f1 := followerOf(t, c, g)
	f2 := followerOf(t, c, g, f1)
	for i := 0; i < 20; i++ {
		v := fmt.Sprint(i)
		put(t, c.Client(f1), "k", v)
		for _, reader := range []string{f2, leader} {
			if got, ok := get(t, c.Client(reader), "k", lin); !ok || got != v {
				t.Fatalf("read at %s after write at %s: got %q (found %v), want %q", reader, f1, got, ok, v)
			}
		}
	}
}

// Killing the leader of each group in turn yields a new leader, and no
// acknowledged write is lost.
func TestLeaderCrashLosesNoAcknowledgedWrite(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{OffsetGroups: 1, DataGroups: 1})
	cl := c.Client("")
	acked := map[string]string{}
	for _, g := range metapb.Groups(1, 1) {
		for i := 0; i < 10; i++ {
			k := fmt.Sprintf("%s-%d", g, i)
			put(t, cl, k, "v"+k)
			acked[k] = "v" + k
		}
		if _, err := cl.CommitOffsets(ctxT(t, 20*time.Second), &metapb.CommitOffsetsRequest{Offsets: []*metapb.OffsetCommit{
			{Group: "cg-" + g, Topic: "t", Partition: 0, Offset: 7}}}); err != nil {
			t.Fatal(err)
		}
		old := c.WaitLeader(g, 30*time.Second)
		c.Crash(old)
		poll.ForTrue(t, g+": a new leader after crashing "+old, 30*time.Second, func() bool {
			l := c.Leader(g)
			return l != "" && l != old
		})
		for k, v := range acked {
			if got, ok := get(t, cl, k, lin); !ok || got != v {
				t.Fatalf("after crashing %s (leader of %s): %s = %q (found %v), want %q", old, g, k, got, ok, v)
			}
		}
		if err := c.Restart(old); err != nil {
			t.Fatalf("restart %s: %v", old, err)
		}
	}
	resp, err := cl.FetchOffsets(ctxT(t, 20*time.Second), &metapb.FetchOffsetsRequest{Partitions: []*metapb.TopicPartition{
		{Group: "cg-offset-0", Topic: "t", Partition: 0}}})
	if err != nil {
		t.Fatal(err)
	}
	if o := resp.Offsets[0]; !o.Found || o.Offset != 7 {
		t.Fatalf("offset after crashes: got %v, want 7", o)
	}
}

// waitCaughtUp waits until node id has applied at least what the group's
// leader had committed when called.
func waitCaughtUp(t *testing.T, c *metanodetest.Cluster, id, group string) {
	t.Helper()
	leader := c.WaitLeader(group, 30*time.Second)
	var want uint64
	for _, st := range c.Running(leader).Status() {
		if st.Group == group {
			want = st.CommitIndex
		}
	}
	poll.ForTrue(t, fmt.Sprintf("%s to catch up on %s to index %d", id, group, want), 60*time.Second, func() bool {
		for _, st := range c.Running(id).Status() {
			if st.Group == group && st.AppliedIndex >= want {
				return true
			}
		}
		return false
	})
}

// A stopped node restarts on its data, catches up, and serves what was
// written while it was down (stale reads there prove the local replica
// has it).
func TestRestartCatchesUp(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{})
	g := metapb.DataGroupFor([]byte("a"), 1)
	cl := c.Client("")
	put(t, cl, "before", "1")
	victim := followerOf(t, c, g)
	c.Stop(victim)
	for i := 0; i < 50; i++ {
		put(t, cl, fmt.Sprintf("during-%d", i), "2")
	}
	if err := c.Restart(victim); err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, c, victim, g)
	local := c.Client(victim)
	for _, k := range []string{"before", "during-0", "during-49"} {
		if _, ok := get(t, local, k, metapb.ReadConsistency_READ_CONSISTENCY_STALE); !ok {
			t.Fatalf("restarted %s lacks %s in its replica", victim, k)
		}
	}
}

// A node that fell behind past log compaction is brought back by a
// snapshot install, and its state hash then equals the leader's.
func TestSnapshotInstallForLaggingNode(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{Metrics: true, Configure: func(cfg *metanode.Config) {
		cfg.SnapshotThreshold = 64
		cfg.TrailingLogs = 16
		cfg.SnapshotInterval = 200 * time.Millisecond
	}})
	g := metapb.DataGroupFor([]byte("x"), 1)
	cl := c.Client("")
	put(t, cl, "stale-key", "will be deleted")
	victim := followerOf(t, c, g)
	c.Crash(victim)
	_, err := cl.Delete(ctxT(t, 10*time.Second), &metapb.DeleteRequest{Key: []byte("stale-key")})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 400; i++ {
		put(t, cl, fmt.Sprintf("k%03d", i), strings.Repeat("v", 100))
	}
	leader := c.WaitLeader(g, 30*time.Second)
	// Wait until the leader has snapshotted past the victim's log.
	poll.ForTrue(t, "leader "+leader+" to snapshot "+g, 30*time.Second, func() bool {
		for _, st := range c.Running(leader).Status() {
			if st.Group == g {
				return st.LastSnapshotIndex > 100
			}
		}
		return false
	})
	if err := c.Restart(victim); err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, c, victim, g)
	local := c.Client(victim)
	if _, ok := get(t, local, "stale-key", metapb.ReadConsistency_READ_CONSISTENCY_STALE); ok {
		t.Fatalf("a key deleted while %s was down survived the snapshot restore", victim)
	}
	if _, ok := get(t, local, "k399", metapb.ReadConsistency_READ_CONSISTENCY_STALE); !ok {
		t.Fatalf("%s lacks k399 after catching up", victim)
	}
	// The transfer is in the metrics: the restarted node installed a
	// snapshot, and some node built one from its files to send.
	grp := map[string]string{"group": g}
	vm := scrape(t, c.Running(victim).MetricsAddr())
	if n, b := value(vm, "meta_group_snapshot_restores", grp), value(vm, "meta_group_snapshot_restore_bytes_total", grp); n < 1 || b <= 0 {
		t.Errorf("%s's metrics: %v snapshot restores of %v bytes, want at least 1 of more than 0", victim, n, b)
	}
	if n, b := total(t, c, "meta_group_snapshot_exports", grp), total(t, c, "meta_group_snapshot_export_bytes_total", grp); n < 1 || b <= 0 {
		t.Errorf("the nodes' metrics: %v snapshot exports of %v bytes, want at least 1 of more than 0", n, b)
	}
	// Same applied index, same state hash.
	poll.For(t, "the same state on the leader and the restored node", 30*time.Second, func() error {
		lh, err1 := c.Running(leader).StateHash(g)
		vh, err2 := c.Running(victim).StateHash(g)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if lh.Index == vh.Index && lh.Hash != vh.Hash {
			t.Fatalf("state differs at the same index: leader %+v, restored %+v", lh, vh)
		}
		return poll.Check(lh == vh, fmt.Sprintf("leader %+v, restored %+v", lh, vh))
	})
}

func waitMembership(t *testing.T, c *metanodetest.Cluster, observer string, groups []string, ok func([]*metapb.Member) bool, what string) {
	t.Helper()
	poll.ForTrue(t, what+" in every group", 60*time.Second, func() bool {
		for _, st := range c.Running(observer).Status() {
			if slices.Contains(groups, st.Group) && !ok(st.Members) {
				return false
			}
		}
		return true
	})
}

// With 3 nodes and 5 groups, the controller spreads leadership: no node
// leads everything once it has run.
func TestLeadersSpread(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{OffsetGroups: 2, DataGroups: 2, Controller: func(cfg *controller.Config) {
		cfg.SpreadInterval = 300 * time.Millisecond
	}})
	groups := metapb.Groups(2, 2)
	// Put every leadership on n1 first.
	cl := c.Client("")
	for _, g := range groups {
		if l := c.WaitLeader(g, 30*time.Second); l != "n1" {
			if _, err := cl.TransferLeader(ctxT(t, 20*time.Second), g, "n1"); err != nil {
				t.Logf("transfer %s to n1: %v", g, err)
			}
		}
	}
	poll.For(t, "leaders spread", 60*time.Second, func() error {
		counts := map[string]int{}
		for _, g := range groups {
			counts[c.WaitLeader(g, 30*time.Second)]++
		}
		most := 0
		for _, n := range counts {
			most = max(most, n)
		}
		return poll.Check(most <= 2 && len(counts) == 3, fmt.Sprint(counts))
	})
}

// A node whose data directory says one shape refuses to start with other
// group counts, naming both.
func TestRefusesOtherGroupCounts(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{})
	c.Stop("n3")
	n3 := c.Get("n3")
	cfg := metanode.DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.ListenAddr, cfg.DataGroups = "n3", n3.Dir, n3.Addr, 4
	cfg.Logger = metanodetest.NewLogger(t)
	node, err := metanode.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = node.Start(ctxT(t, 20*time.Second))
	if !errors.Is(err, metanode.ErrClusterMismatch) || !strings.Contains(err.Error(), "created with 1 data groups; this node was started with 4") {
		t.Fatalf("got %v, want a cluster mismatch naming 1 and 4 data groups", err)
	}
	_ = node.Close()
}

// A write whose outcome the node cannot know comes back as an unknown
// outcome, distinct from a definite failure, and is not retried.
func TestUnknownOutcomeIsReported(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{})
	g := metapb.DataGroupFor([]byte("u"), 1)
	leader := c.WaitLeader(g, 30*time.Second)
	pinned := c.Client(leader)
	put(t, pinned, "u", "0")
	// Cut the leader off from its followers: it keeps accepting the
	// proposal but can never commit it.
	var others []string
	for _, id := range c.IDs() {
		if id != leader {
			others = append(others, id)
		}
	}
	c.Net.Partition([]string{leader}, others)
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	_, err := pinned.Put(ctx, &metapb.PutRequest{Key: []byte("u"), Value: []byte("1")})
	if !client.IsUnknown(err) {
		t.Fatalf("got %v, want an unknown outcome", err)
	}
	c.Net.Heal()
}

// Bad input is rejected with InvalidArgument naming the field, and nothing
// is written.
func TestBadInput(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{})
	cl := c.Client("")
	big := strings.Repeat("k", metapb.MaxKeyBytes+1)
	huge := make([]byte, metapb.MaxValueBytes+1)
	cases := []struct {
		name  string
		call  func(context.Context) error
		field string
	}{
		{"empty key", func(ctx context.Context) error {
			_, err := cl.Put(ctx, &metapb.PutRequest{Key: nil, Value: []byte("v")})
			return err
		}, "key"},
		{"oversized key", func(ctx context.Context) error {
			_, err := cl.Put(ctx, &metapb.PutRequest{Key: []byte(big), Value: []byte("v")})
			return err
		}, "key"},
		{"oversized value", func(ctx context.Context) error {
			_, err := cl.Put(ctx, &metapb.PutRequest{Key: []byte("ok"), Value: huge})
			return err
		}, "value"},
		{"cas absent with value", func(ctx context.Context) error {
			_, err := cl.CompareAndSwap(ctx, &metapb.CompareAndSwapRequest{Key: []byte("ok"), ExpectAbsent: true, ExpectedValue: []byte("x")})
			return err
		}, "expect_absent"},
		{"get bad consistency", func(ctx context.Context) error {
			_, err := cl.Get(ctx, &metapb.GetRequest{Key: []byte("ok"), Consistency: 7})
			return err
		}, "consistency"},
		{"list limit", func(ctx context.Context) error {
			_, err := cl.List(ctx, &metapb.ListRequest{Limit: metapb.MaxListLimit + 1})
			return err
		}, "limit"},
		{"commit empty", func(ctx context.Context) error {
			_, err := cl.CommitOffsets(ctx, &metapb.CommitOffsetsRequest{})
			return err
		}, "offsets"},
		{"commit empty group", func(ctx context.Context) error {
			_, err := cl.CommitOffsets(ctx, &metapb.CommitOffsetsRequest{Offsets: []*metapb.OffsetCommit{
				{Group: "g", Topic: "t", Partition: 0, Offset: 1}, {Group: "", Topic: "t", Partition: 0, Offset: 1}}})
			return err
		}, "offsets[1].group"},
		{"commit negative partition", func(ctx context.Context) error {
			_, err := cl.CommitOffsets(ctx, &metapb.CommitOffsetsRequest{Offsets: []*metapb.OffsetCommit{
				{Group: "g", Topic: "t", Partition: -1, Offset: 1}}})
			return err
		}, "offsets[0].partition"},
		{"commit negative offset", func(ctx context.Context) error {
			_, err := cl.CommitOffsets(ctx, &metapb.CommitOffsetsRequest{Offsets: []*metapb.OffsetCommit{
				{Group: "g", Topic: "t", Partition: 0, Offset: -5}}})
			return err
		}, "offsets[0].offset"},
		{"commit long topic", func(ctx context.Context) error {
			_, err := cl.CommitOffsets(ctx, &metapb.CommitOffsetsRequest{Offsets: []*metapb.OffsetCommit{
				{Group: "g", Topic: strings.Repeat("t", 256), Partition: 0, Offset: 1}}})
			return err
		}, "offsets[0].topic"},
		{"fetch empty partition", func(ctx context.Context) error {
			_, err := cl.FetchOffsets(ctx, &metapb.FetchOffsetsRequest{Partitions: []*metapb.TopicPartition{{}}})
			return err
		}, "partitions[0].group"},
		{"delete group empty", func(ctx context.Context) error {
			_, err := cl.DeleteGroup(ctx, &metapb.DeleteGroupRequest{})
			return err
		}, "group"},
		{"transfer unknown group", func(ctx context.Context) error {
			_, err := cl.TransferLeader(ctx, "data-9", "")
			return err
		}, "group"},
		{"add member empty id", func(ctx context.Context) error {
			_, err := cl.AddMember(ctx, "", "127.0.0.1:1")
			return err
		}, "id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(ctxT(t, 10*time.Second))
			st, _ := status.FromError(err)
			if st.Code() != codes.InvalidArgument {
				t.Fatalf("got %v, want InvalidArgument", err)
			}
			var field string
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 0 {
					field = br.FieldViolations[0].Field
				}
			}
			if field != tc.field || !strings.Contains(st.Message(), tc.field) {
				t.Fatalf("got field %q, message %q; want field %q named", field, st.Message(), tc.field)
			}
		})
	}
	// Bytes that are no protobuf at all: InvalidArgument naming the
	// request, not gRPC's Internal.
	conn, err := grpc.NewClient(c.Endpoints()[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var out emptypb.Empty
	err = conn.Invoke(ctxT(t, 10*time.Second), "/meta.v1.KV/Put", rawBytes{0xff, 0xff, 0xff, 0x01}, &out,
		grpc.ForceCodecV2(rawCodec{}))
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "malformed") {
		t.Fatalf("malformed request: got %v, want InvalidArgument naming a malformed request", err)
	}
	// Nothing was written: no keys, and the offset of group "g" absent.
	lr, err := cl.List(ctxT(t, 10*time.Second), &metapb.ListRequest{})
	if err != nil || len(lr.Kvs) != 0 {
		t.Fatalf("after bad input: list got %v (err %v), want nothing", lr.GetKvs(), err)
	}
	fr, err := cl.FetchOffsets(ctxT(t, 10*time.Second), &metapb.FetchOffsetsRequest{Partitions: []*metapb.TopicPartition{{Group: "g", Topic: "t"}}})
	if err != nil || fr.Offsets[0].Found {
		t.Fatalf("after bad input: offset of g found=%v err=%v, want absent", fr.GetOffsets(), err)
	}
}

// Regression (verify/README, in-process runner): crashing a busy leader
// could hang forever, waiting for an apply future raft never answers once
// shut down. Every crash must return.
func TestCrashOfBusyLeaderReturns(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{})
	g := metapb.DataGroupFor([]byte("k"), 1)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := c.Client("")
			for i := 0; ctx.Err() == nil; i++ {
				wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
				_, _ = cl.Put(wctx, &metapb.PutRequest{Key: []byte(fmt.Sprintf("w%d-%d", w, i)), Value: []byte("v")})
				wcancel()
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	for round := 0; round < 10; round++ {
		leader := c.WaitLeader(g, 30*time.Second)
		done := make(chan struct{})
		go func() { c.Crash(leader); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: crashing busy leader %s did not return in 30s", round, leader)
		}
		if err := c.Restart(leader); err != nil {
			t.Fatalf("restart %s: %v", leader, err)
		}
	}
}

// rawBytes and rawCodec send arbitrary bytes as a request.
type rawBytes []byte

type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(rawBytes))}, nil
}
func (rawCodec) Unmarshal(mem.BufferSlice, any) error { return nil }
func (rawCodec) Name() string                         { return "proto" }

// Removing the member that leads a group succeeds, whichever kind of group
// it leads: the removal applies, the removed node leaves the group, and
// nothing read afterwards may turn the applied removal into a definite
// failure (it did: `metactl member remove n4` with n4 leading metadata-0
// said `no member "n4"` after the client retried a NO_LEADER from the
// read that followed the applied removal).
func TestRemovingTheLeaderSucceeds(t *testing.T) {
	for _, led := range [][]string{{metapb.MetadataGroup}, {"offset-0"}, {"data-0"}, metapb.Groups(1, 1)} {
		t.Run(strings.Join(led, "+"), func(t *testing.T) {
			// Reconciliation right after the removal: the removed leader
			// leaves its groups while the call is still answering.
			// Every node hosts every group (RF 4, metadata-0 on all 4).
			c := metanodetest.Start(t, metanodetest.Options{Nodes: 4,
				Configure: func(cfg *metanode.Config) {
					cfg.ReconcileInterval = 20 * time.Millisecond
					cfg.ReplicationFactor, cfg.MetadataReplicationFactor = 4, 5
				},
				Controller: func(cfg *controller.Config) { cfg.SpreadInterval = 0 }})
			for _, g := range metapb.Groups(1, 1) {
				want := "n1"
				if slices.Contains(led, g) {
					want = "n4"
				}
				c.WaitLeader(g, 30*time.Second)
				c.MakeLeader(g, want, 60*time.Second)
			}
			// Through n4 itself, as `metactl member remove --force n4`
			// does when n4 leads metadata-0: the node answering is the
			// one removed. (Forced: n4 is alive and holds replicas.)
			resp, err := c.Client("n4").ForceRemoveMember(ctxT(t, 30*time.Second), "n4")
			if err != nil {
				t.Fatalf("remove n4 while it leads %v: %v", led, err)
			}
			if slices.ContainsFunc(resp.Members, func(m *metapb.Member) bool { return m.Id == "n4" }) || len(resp.Members) != 3 {
				t.Fatalf("members after removing n4: got %v, want n1..n3", resp.Members)
			}
			waitMembership(t, c, "n1", metapb.Groups(1, 1), func(ms []*metapb.Member) bool {
				return !slices.ContainsFunc(ms, func(m *metapb.Member) bool { return m.Id == "n4" })
			}, "n4 gone")
		})
	}
}

// Operations that only a node proposes for itself (the controller's
// decisions, expiries, formation, the directory) are refused when they
// arrive over the peer call, which anyone reaching the port can make: a
// forged broker registration is not applied.
func TestInternalOperationOverPeerCallRefused(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{})
	leader := c.Running(c.WaitLeader(metapb.MetadataGroup, 30*time.Second))
	conn, err := grpc.NewClient(leader.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	payload, err := sm.EncodeOp(&logpb.Op{Op: &logpb.Op_BrokerRegister{BrokerRegister: &logpb.BrokerRegister{BrokerId: "forged", Endpoints: []string{"x:1"}}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = raftpb.NewPeerServiceClient(conn).Propose(ctxT(t, 10*time.Second),
		&raftpb.ProposeRequest{ClusterId: leader.ClusterID(), Group: metapb.MetadataGroup, Payload: payload})
	if err == nil || !strings.Contains(err.Error(), "cannot be proposed from outside") {
		t.Fatalf("a forged broker registration over the peer call: %v, want it refused", err)
	}
	brokers, err := c.Client("").ListBrokers(ctxT(t, 10*time.Second), &metapb.ListBrokersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range brokers.GetBrokers() {
		if b.GetBrokerId() == "forged" {
			t.Fatalf("the forged registration was applied: %v", b)
		}
	}
}
