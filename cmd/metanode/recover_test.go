package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify/poll"
)

// recover runs `metanode recover` as the binary.
func (p *procs) recover(args ...string) (string, error) {
	out, err := exec.Command(p.bin, append([]string{"recover"}, args...)...).CombinedOutput()
	return string(out), err
}

func shortCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// caughtUp reports whether node id has applied, in every group it hosts,
// at least what the group's leader had committed.
func caughtUp(ctx context.Context, cl *client.Client, addrs map[string]string, id string) error {
	st, err := cl.Status(ctx, addrs[id])
	if err != nil {
		return err
	}
	for _, g := range st.Groups {
		if g.LeaderAddr == "" {
			return fmt.Errorf("%s: no leader", g.Group)
		}
		lst, err := cl.Status(ctx, g.LeaderAddr)
		if err != nil {
			return err
		}
		for _, lg := range lst.Groups {
			if lg.Group == g.Group && g.AppliedIndex < lg.CommitIndex {
				return fmt.Errorf("%s: applied %d, leader committed %d", g.Group, g.AppliedIndex, lg.CommitIndex)
			}
		}
	}
	return nil
}

// Majority loss: three nodes (RF 3, two data groups, two offset groups)
// take acknowledged writes (keys, offsets, a topic in metadata-0); the up
// to date node survives while the two others are killed and their disks
// wiped; `metanode recover` on the survivor (stopped by SIGKILL, so its
// state machines replay from the raft log) makes it a one-node cluster of
// the same id that holds every acknowledged write and serves; two fresh
// nodes join (member add, --join), get replicas of every group, and the
// cluster serves linearizable reads and writes through them, with the
// lost nodes no longer members. Before that, recover refuses a running
// node's directory, another node's id and a missing directory.
func TestMajorityLossRecoverFromSurvivor(t *testing.T) {
	p := newBuiltProcs(t, "n1", "n2", "n3", "n4", "n5")
	ic := p.initial("n1", "n2", "n3")
	for _, id := range []string{"n1", "n2", "n3"} {
		p.start(id, "--initial-cluster", ic, "--data-groups", "2", "--offset-groups", "2", "--replication-factor", "3")
	}
	cl := p.client("n1", "n2", "n3")
	poll.For(t, "the cluster to serve", 90*time.Second, func() error {
		_, err := cl.Put(shortCtx(t), &metapb.PutRequest{Key: []byte("warm"), Value: []byte("1")})
		return err
	})
	const keys, offsets = 200, 30
	for i := range keys {
		k := fmt.Sprintf("k%03d", i)
		if _, err := cl.Put(shortCtx(t), &metapb.PutRequest{Key: []byte(k), Value: []byte("v" + k)}); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	for i := range offsets {
		o := &metapb.OffsetCommit{Group: fmt.Sprintf("g%d", i%5), Topic: "t", Partition: int32(i), Offset: int64(1000 + i)}
		if _, err := cl.CommitOffsets(shortCtx(t), &metapb.CommitOffsetsRequest{Offsets: []*metapb.OffsetCommit{o}}); err != nil {
			t.Fatalf("commit offset %d: %v", i, err)
		}
	}
	topic := &metapb.Resource{Kind: metapb.ResourceKind_RESOURCE_KIND_TOPIC, Name: "orders",
		Spec: &metapb.Resource_Topic{Topic: &metapb.TopicSpec{Partitions: 3, ReplicationFactor: 1}}}
	if _, err := cl.CreateResource(shortCtx(t), &metapb.CreateResourceRequest{Resource: topic}); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	before, err := cl.Members(shortCtx(t))
	if err != nil {
		t.Fatal(err)
	}

	// The survivor is n1, once it has applied what every leader committed:
	// with RF 3 it then holds every acknowledged write.
	poll.For(t, "n1 to be caught up", 30*time.Second, func() error { return caughtUp(shortCtx(t), cl, p.addrs, "n1") })

	t.Run("a running node's directory is refused", func(t *testing.T) {
		out, err := p.recover("--id", "n1", "--data-dir", p.dataDir("n1"))
		if err == nil || !strings.Contains(out, "--data-dir") || !strings.Contains(out, "stop the node") {
			t.Fatalf("recover on a running node: %v\n%s", err, out)
		}
	})
	for _, id := range []string{"n2", "n3"} {
		p.kill(id)
		if err := os.RemoveAll(p.dataDir(id)); err != nil {
			t.Fatal(err)
		}
	}
	p.kill("n1")
	for _, tc := range []struct{ name, id, dir, want string }{
		{"another node's id", "n2", p.dataDir("n1"), `--id: data directory ` + p.dataDir("n1") + ` belongs to node "n1", not "n2"`},
		{"a missing directory", "n2", p.dataDir("n2"), "--data-dir: stat " + p.dataDir("n2")},
		{"no id", "", p.dataDir("n1"), "--id: the surviving node's id is required"},
	} {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			out, err := p.recover("--id", tc.id, "--data-dir", tc.dir)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Fatalf("got %v\n%s\nwant an error saying %q", err, out, tc.want)
			}
		})
	}
	out, err := p.recover("--id", "n1", "--data-dir", p.dataDir("n1"), "--dry-run")
	if err != nil || !strings.Contains(out, "dry run") || !strings.Contains(out, "[n2 n3]") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	out, err = p.recover("--id", "n1", "--data-dir", p.dataDir("n1"))
	if err != nil {
		t.Fatalf("recover: %v\n%s", err, out)
	}
	t.Logf("recover: %s", out)
	// Run again (as after an interruption): it changes nothing more.
	if out, err := p.recover("--id", "n1", "--data-dir", p.dataDir("n1")); err != nil || !strings.Contains(out, "members removed (lost; never restart them with their old data): []") {
		t.Fatalf("recover again: %v\n%s", err, out)
	}

	p.start("n1")
	cl1 := p.client("n1")
	poll.For(t, "the recovered node to serve", 60*time.Second, func() error {
		_, err := cl1.Get(shortCtx(t), &metapb.GetRequest{Key: []byte("k000")})
		return err
	})
	checkAcked := func(t *testing.T, cl *client.Client) {
		t.Helper()
		for i := range keys {
			k := fmt.Sprintf("k%03d", i)
			got, err := cl.Get(shortCtx(t), &metapb.GetRequest{Key: []byte(k)})
			if err != nil || got.Kv == nil || string(got.Kv.Value) != "v"+k {
				t.Fatalf("acknowledged %s: got %v, %v", k, got, err)
			}
		}
		for i := range offsets {
			g := fmt.Sprintf("g%d", i%5)
			got, err := cl.FetchOffsets(shortCtx(t), &metapb.FetchOffsetsRequest{Partitions: []*metapb.TopicPartition{{Group: g, Topic: "t", Partition: int32(i)}}})
			if err != nil || len(got.Offsets) != 1 || !got.Offsets[0].Found || got.Offsets[0].Offset != int64(1000+i) {
				t.Fatalf("acknowledged offset %s/t/%d: got %v, %v", g, i, got, err)
			}
		}
		r, err := cl.GetResource(shortCtx(t), &metapb.GetResourceRequest{Kind: metapb.ResourceKind_RESOURCE_KIND_TOPIC, Name: "orders"})
		if err != nil || r.Resource.GetTopic().GetPartitions() != 3 {
			t.Fatalf("acknowledged topic: got %v, %v", r, err)
		}
	}
	checkAcked(t, cl1)
	ms, err := cl1.Members(shortCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms.Members) != 1 || ms.Members[0].Id != "n1" || ms.ClusterId != before.ClusterId {
		t.Fatalf("members after recovery: %v (cluster %s, was %s), want n1 alone in the same cluster", ms.Members, ms.ClusterId, before.ClusterId)
	}
	if _, err := cl1.Put(shortCtx(t), &metapb.PutRequest{Key: []byte("alone"), Value: []byte("1")}); err != nil {
		t.Fatalf("put on the recovered node: %v", err)
	}

	// Grow back to three nodes: fresh nodes (new ids) join and are filled.
	for _, id := range []string{"n4", "n5"} {
		if _, err := cl1.AddMember(shortCtx(t), id, p.addrs[id]); err != nil {
			t.Fatalf("member add %s: %v", id, err)
		}
		p.start(id, "--join", p.addrs["n1"])
	}
	var gs *metapb.ListGroupsResponse
	poll.For(t, "every group to have voting replicas on n1, n4 and n5", 3*time.Minute, func() error {
		gs, err = cl1.ListGroups(shortCtx(t))
		if err != nil {
			return err
		}
		for _, g := range gs.Groups {
			var on []string
			for _, r := range g.Replicas {
				if r.Voter {
					on = append(on, r.Node)
				}
			}
			slices.Sort(on)
			if !slices.Equal(on, []string{"n1", "n4", "n5"}) {
				return fmt.Errorf("%s: voters %v", g.Group, on)
			}
		}
		for _, id := range []string{"n4", "n5"} {
			st, err := cl1.Status(shortCtx(t), p.addrs[id])
			if err != nil {
				return err
			}
			if len(st.Groups) != len(gs.Groups) {
				return fmt.Errorf("%s hosts %d of %d groups", id, len(st.Groups), len(gs.Groups))
			}
		}
		return nil
	})
	// The new nodes serve: the acknowledged writes, linearizably, and new
	// writes; and with n1 gone the two of them are still a majority.
	cl45 := p.client("n4", "n5")
	checkAcked(t, cl45)
	if _, err := cl45.Put(shortCtx(t), &metapb.PutRequest{Key: []byte("grown"), Value: []byte("3")}); err != nil {
		t.Fatalf("put after growing back: %v", err)
	}
	ms, err = cl45.Members(shortCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range ms.Members {
		ids = append(ids, m.Id)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"n1", "n4", "n5"}) {
		t.Fatalf("members %v, want n1 n4 n5 (the lost n2 and n3 gone)", ids)
	}
	p.kill("n1")
	poll.For(t, "n4 and n5 to serve without n1", 60*time.Second, func() error {
		got, err := cl45.Get(shortCtx(t), &metapb.GetRequest{Key: []byte("grown")})
		if err == nil && (got.Kv == nil || string(got.Kv.Value) != "3") {
			return fmt.Errorf("grown: %v", got)
		}
		return err
	})
	if _, err := cl45.Put(shortCtx(t), &metapb.PutRequest{Key: []byte("without-n1"), Value: []byte("1")}); err != nil {
		t.Fatalf("put without n1: %v", err)
	}
}

// A survivor that lacks a group (RF 1: every replica of it was on a lost
// node) is refused, naming the group, and nothing is changed: the lost
// nodes, brought back, make the cluster whole again with every member.
// Once they are lost for good, --recreate-lost-groups recovers the rest
// and makes the lost groups again, empty: every key then reads either
// what was acknowledged (its group survived) or nothing (its group was
// lost), and every group takes writes.
func TestRecoverLostGroups(t *testing.T) {
	p := newBuiltProcs(t, "n1", "n2", "n3")
	ic := p.initial("n1", "n2", "n3")
	for _, id := range []string{"n1", "n2", "n3"} {
		p.start(id, "--initial-cluster", ic, "--data-groups", "4", "--replication-factor", "1", "--metadata-replication-factor", "1")
	}
	cl := p.client("n1", "n2", "n3")
	var gs *metapb.ListGroupsResponse
	poll.For(t, "the cluster to serve", 90*time.Second, func() error {
		if _, err := cl.Put(shortCtx(t), &metapb.PutRequest{Key: []byte("warm"), Value: []byte("1")}); err != nil {
			return err
		}
		var err error
		gs, err = cl.ListGroups(shortCtx(t))
		return err
	})
	// The survivor is the node holding metadata-0; the groups it lacks are
	// the lost ones.
	placed := map[string][]string{}
	var survivor string
	for _, g := range gs.Groups {
		for _, r := range g.Replicas {
			placed[r.Node] = append(placed[r.Node], g.Group)
			if g.Group == metapb.MetadataGroup {
				survivor = r.Node
			}
		}
	}
	var lost []string
	for _, g := range gs.Groups {
		if !slices.Contains(placed[survivor], g.Group) {
			lost = append(lost, g.Group)
		}
	}
	if len(lost) == 0 {
		t.Fatalf("placement %v leaves %s every group: nothing to test", placed, survivor)
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		p.kill(id)
	}
	out, err := p.recover("--id", survivor, "--data-dir", p.dataDir(survivor))
	if err == nil || !strings.Contains(out, "groups with no replica on this node: "+fmt.Sprint(lost)) || !strings.Contains(out, "nothing was changed") {
		t.Fatalf("recover without %v: %v\n%s\nwant a refusal naming them, before any change", lost, err, out)
	}
	// Nothing changed: the three nodes, restarted, are one cluster again.
	for _, id := range []string{"n1", "n2", "n3"} {
		p.start(id)
	}
	poll.For(t, "the cluster to serve again", 90*time.Second, func() error {
		ms, err := cl.Members(shortCtx(t))
		if err != nil {
			return err
		}
		if len(ms.Members) != 3 {
			return fmt.Errorf("members %v", ms.Members)
		}
		got, err := cl.Get(shortCtx(t), &metapb.GetRequest{Key: []byte("warm")})
		if err == nil && got.Kv == nil {
			return errors.New("warm is missing")
		}
		return err
	})

	const keys = 100
	for i := range keys {
		k := fmt.Sprintf("k%03d", i)
		if _, err := cl.Put(shortCtx(t), &metapb.PutRequest{Key: []byte(k), Value: []byte("v" + k)}); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		p.kill(id)
		if id != survivor {
			if err := os.RemoveAll(p.dataDir(id)); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, err = p.recover("--id", survivor, "--data-dir", p.dataDir(survivor), "--recreate-lost-groups")
	if err != nil || !strings.Contains(out, "recreated EMPTY on this node (their data is gone): "+fmt.Sprint(lost)) {
		t.Fatalf("recover recreating %v: %v\n%s", lost, err, out)
	}
	t.Logf("recover: %s", out)
	p.start(survivor)
	cl1 := p.client(survivor)
	poll.For(t, "every group to take writes on the recovered node", 60*time.Second, func() error {
		for i := range keys {
			if _, err := cl1.Put(shortCtx(t), &metapb.PutRequest{Key: []byte(fmt.Sprintf("new%03d", i)), Value: []byte("1")}); err != nil {
				return err
			}
		}
		return nil
	})
	kept, gone := 0, 0
	for i := range keys {
		k := fmt.Sprintf("k%03d", i)
		got, err := cl1.Get(shortCtx(t), &metapb.GetRequest{Key: []byte(k)})
		switch {
		case err != nil:
			t.Fatalf("get %s: %v", k, err)
		case got.Kv == nil:
			gone++
		case string(got.Kv.Value) == "v"+k:
			kept++
		default:
			t.Fatalf("%s reads %q", k, got.Kv.Value)
		}
	}
	if kept == 0 || gone == 0 {
		t.Fatalf("%d keys kept, %d gone: want both (groups %v lost of %v)", kept, gone, lost, placed)
	}
	gs, err = cl1.ListGroups(shortCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs.Groups {
		if len(g.Replicas) != 1 || g.Replicas[0].Node != survivor {
			t.Fatalf("%s: replicas %v, want %s alone", g.Group, g.Replicas, survivor)
		}
	}
	t.Logf("%d keys kept, %d gone with groups %v", kept, gone, lost)
}

// The in-process command refuses a missing data directory with an error
// naming the flag, as the binary does (runs in -short).
func TestRecoverCommandFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--data-dir", t.TempDir()}, "--id"},
		{[]string{"--id", "n1"}, "--data-dir"},
		{[]string{"--id", "n1", "--data-dir", filepath.Join(t.TempDir(), "none")}, "--data-dir: stat"},
		{[]string{"--id", "n1", "--data-dir", t.TempDir()}, "holds no node's data"},
	} {
		var out bytes.Buffer
		cmd := command()
		cmd.SetArgs(append([]string{"recover"}, tc.args...))
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("recover %v: %v, want an error naming %s", tc.args, err, tc.want)
		}
	}
}
