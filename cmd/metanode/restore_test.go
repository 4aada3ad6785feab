package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify/poll"
)

// restoreCmd runs `metanode restore` in process, as the binary would.
func restoreCmd(args ...string) (string, error) {
	var out bytes.Buffer
	cmd := command()
	cmd.SetArgs(append([]string{"restore"}, args...))
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	err := cmd.Execute()
	return out.String(), err
}

// A backup taken online holds every write acknowledged before it; after
// every data directory is wiped, `metanode restore` on each member (same
// file, same initial cluster) makes a new cluster (new id) that serves
// exactly that: every acknowledged key, offset, session and resource, not
// the write made after the backup, and each offset and data group hashes
// as the backup recorded. A cluster whose groups were split restores
// with its own groups and ranges (at their versions), and splits again.
func TestBackupWipeRestore(t *testing.T) {
	t.Run("groups as created", func(t *testing.T) { backupWipeRestore(t, false) })
	t.Run("groups split", func(t *testing.T) { backupWipeRestore(t, true) })
}

// splitDone splits group and waits until the split is done.
func splitDone(ctx context.Context, t *testing.T, cl *client.Client, group string) string {
	t.Helper()
	resp, err := cl.SplitGroup(ctx, group, 0)
	if err != nil {
		t.Fatalf("split %s: %v", group, err)
	}
	poll.For(t, "split of "+group, time.Minute, func() error {
		gs, err := cl.ListGroups(ctx)
		if err != nil {
			return err
		}
		p, ch := gs.Find(group), gs.Find(resp.Child)
		return poll.Check(p != nil && ch != nil && p.SplitChild == "" && ch.State == "active", fmt.Sprintf("%v, %v", p, ch))
	})
	return resp.Child
}

// groupRanges is each group's ranges as group list shows them.
func groupRanges(ctx context.Context, t *testing.T, cl *client.Client) map[string]string {
	t.Helper()
	gs, err := cl.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, g := range gs.Groups {
		out[g.Group] = fmt.Sprint(g.Ranges)
	}
	return out
}

func backupWipeRestore(t *testing.T, split bool) {
	dir := t.TempDir()
	c := metanodetest.Start(t, metanodetest.Options{OffsetGroups: 2, DataGroups: 2, Dir: filepath.Join(dir, "nodes")})
	cl := c.Client("")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const keys, sessions, offsets = 200, 50, 40
	for i := range keys {
		if _, err := cl.Put(ctx, &metapb.PutRequest{Key: fmt.Appendf(nil, "k%03d", i), Value: fmt.Appendf(nil, "v%d", i)}); err != nil {
			t.Fatalf("put k%03d: %v", i, err)
		}
	}
	for i := range sessions {
		s := &metapb.Session{ClientId: fmt.Sprintf("c%02d", i), BrokerId: "b1", Connected: true, State: fmt.Appendf(nil, "s%d", i)}
		if _, err := cl.PutSessions(ctx, &metapb.PutSessionsRequest{Sessions: []*metapb.Session{s}}); err != nil {
			t.Fatalf("put session %s: %v", s.ClientId, err)
		}
	}
	for i := range offsets {
		o := &metapb.OffsetCommit{Group: fmt.Sprintf("g%d", i%7), Topic: "t", Partition: int32(i), Offset: int64(1000 + i)}
		if _, err := cl.CommitOffsets(ctx, &metapb.CommitOffsetsRequest{Offsets: []*metapb.OffsetCommit{o}}); err != nil {
			t.Fatalf("commit offset %d: %v", i, err)
		}
	}
	topic := &metapb.Resource{Kind: metapb.ResourceKind_RESOURCE_KIND_TOPIC, Name: "orders",
		Spec: &metapb.Resource_Topic{Topic: &metapb.TopicSpec{Partitions: 3, ReplicationFactor: 1}}}
	if _, err := cl.CreateResource(ctx, &metapb.CreateResourceRequest{Resource: topic}); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	old, err := cl.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	groups := 5
	if split {
		// data-0 and offset-1 split (their new groups data-2 and
		// offset-2), data-2 again (data-3): ranges of versions 2 and 3.
		splitDone(ctx, t, cl, "data-0")
		splitDone(ctx, t, cl, "offset-1")
		splitDone(ctx, t, cl, "data-2")
		groups = 8
	}
	ranges := groupRanges(ctx, t, cl)

	// The backup is taken through a node that leads no data group (a
	// follower serves it after a read barrier), right after the last
	// acknowledged writes: without the barrier it would miss them.
	follower := c.IDs()[0]
	for _, id := range c.IDs() {
		if id != c.Leader("data-0") && id != c.Leader("data-1") {
			follower = id
		}
	}
	const lastKeys = 20
	for i := range lastKeys {
		if _, err := cl.Put(ctx, &metapb.PutRequest{Key: fmt.Appendf(nil, "last%02d", i), Value: []byte("acked")}); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, "backup.meta")
	man, err := c.Client(follower).SaveBackup(ctx, file, nil)
	if err != nil {
		t.Fatalf("save: %v", err)
	}
	if _, err := os.Stat(file + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("save left %s.tmp behind (stat: %v)", file, err)
	}
	if _, err := cl.Backup(ctx, "data-9", io.Discard); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "group") {
		t.Fatalf("backup of a group the cluster lacks: got %v, want InvalidArgument naming group", err)
	}
	if got, want := len(man.Groups), groups; got != want {
		t.Fatalf("backup of %d groups, want %d", got, want)
	}
	// Acknowledged after the backup: a restore must not have it.
	if _, err := cl.Put(ctx, &metapb.PutRequest{Key: []byte("after"), Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}

	if !split {
		t.Run("bad files are refused, nothing written", func(t *testing.T) { badFiles(t, dir, file, man) })
	}

	c.StopAll()
	var initial []string
	for _, id := range c.IDs() {
		n := c.Get(id)
		initial = append(initial, id+"="+n.Addr)
		if err := os.RemoveAll(n.Dir); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range c.IDs() {
		out, err := restoreCmd("--from", file, "--id", id, "--data-dir", c.Get(id).Dir, "--initial-cluster", strings.Join(initial, ","))
		if err != nil {
			t.Fatalf("restore %s: %v\n%s", id, err, out)
		}
		t.Logf("restore %s: %s", id, out)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(c.IDs()))
	for _, id := range c.IDs() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Restart(id); err != nil {
				errs <- fmt.Errorf("start %s: %w", id, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	cl = c.Client("")

	// The new cluster's record is written by its first metadata leader;
	// a node knows the new cluster id (from the restore) before that, and
	// answers NO_CLUSTER_RECORD (retried) until the record is written,
	// never a member list without members.
	var ms *metapb.MembersResponse
	poll.For(t, "the restored cluster's record", 30*time.Second, func() error {
		ms, err = cl.Members(ctx)
		if err != nil {
			return err
		}
		if len(ms.Members) == 0 {
			t.Fatalf("restored cluster: id %q with 0 members, want NO_CLUSTER_RECORD until its record is written", ms.ClusterId)
		}
		return nil
	})
	if ms.ClusterId == "" || ms.ClusterId == old.ClusterId || len(ms.Members) != 3 {
		t.Fatalf("restored cluster: id %q with %d members, want a new id (not %q) and 3 members", ms.ClusterId, len(ms.Members), old.ClusterId)
	}
	for i := range keys {
		k := fmt.Sprintf("k%03d", i)
		got, err := cl.Get(ctx, &metapb.GetRequest{Key: []byte(k)})
		if err != nil {
			t.Fatalf("get %s: %v", k, err)
		}
		if want := fmt.Sprintf("v%d", i); got.Kv == nil || string(got.Kv.Value) != want {
			t.Fatalf("get %s: got %v, want %q", k, got.Kv, want)
		}
	}
	for i := range lastKeys {
		k := fmt.Sprintf("last%02d", i)
		if got, err := cl.Get(ctx, &metapb.GetRequest{Key: []byte(k)}); err != nil || got.Kv == nil {
			t.Fatalf("get %s: got %v (err %v), want it: it was acknowledged before the backup began", k, got.GetKv(), err)
		}
	}
	if got, err := cl.Get(ctx, &metapb.GetRequest{Key: []byte("after")}); err != nil || got.Kv != nil {
		t.Fatalf("get after: got %v (err %v), want absent: it was written after the backup", got.GetKv(), err)
	}
	for i := range sessions {
		id := fmt.Sprintf("c%02d", i)
		got, err := cl.GetSession(ctx, &metapb.GetSessionRequest{ClientId: id})
		if err != nil {
			t.Fatalf("get session %s: %v", id, err)
		}
		if want := fmt.Sprintf("s%d", i); got.Session == nil || string(got.Session.State) != want {
			t.Fatalf("session %s: got %v, want state %q", id, got.Session, want)
		}
	}
	for i := range offsets {
		tp := &metapb.TopicPartition{Group: fmt.Sprintf("g%d", i%7), Topic: "t", Partition: int32(i)}
		got, err := cl.FetchOffsets(ctx, &metapb.FetchOffsetsRequest{Partitions: []*metapb.TopicPartition{tp}})
		if err != nil {
			t.Fatalf("fetch %v: %v", tp, err)
		}
		if v := got.Offsets[0]; !v.Found || v.Offset != int64(1000+i) {
			t.Fatalf("offset %v: got %v, want %d", tp, v, 1000+i)
		}
	}
	res, err := cl.GetResource(ctx, &metapb.GetResourceRequest{Kind: metapb.ResourceKind_RESOURCE_KIND_TOPIC, Name: "orders"})
	if err != nil || res.Resource.GetTopic().GetPartitions() != 3 {
		t.Fatalf("topic orders: got %v (err %v), want 3 partitions", res.GetResource(), err)
	}
	// Each offset and data group, on every replica, hashes as the backup
	// recorded (metadata-0 holds the new cluster's record instead of the
	// old one's: its hash differs by design).
	for _, g := range man.Groups {
		if g.Group == metapb.MetadataGroup {
			continue
		}
		for _, id := range c.IDs() {
			h, err := cl.StateHash(ctx, c.Get(id).Addr, g.Group)
			if err != nil {
				t.Fatalf("state hash of %s on %s: %v", g.Group, id, err)
			}
			if h.Hash != g.Hash || h.Keys != g.Keys || h.Revision != g.Revision {
				t.Fatalf("%s on %s: hash %016x, %d keys, revision %d; the backup recorded %016x, %d keys, revision %d",
					g.Group, id, h.Hash, h.Keys, h.Revision, g.Hash, g.Keys, g.Revision)
			}
		}
	}
	// The restored cluster has the backed-up cluster's groups, each with
	// its ranges at their versions.
	if got := groupRanges(ctx, t, cl); fmt.Sprint(got) != fmt.Sprint(ranges) {
		t.Fatalf("restored groups and ranges:\n%v\nwant the backed-up cluster's:\n%v", got, ranges)
	}
	// The restored cluster takes writes, and splits (a new group's name
	// and version above the restored ones').
	if _, err := cl.Put(ctx, &metapb.PutRequest{Key: []byte("new"), Value: []byte("y")}); err != nil {
		t.Fatalf("put into the restored cluster: %v", err)
	}
	if split {
		if child := splitDone(ctx, t, cl, "data-1"); child != "data-4" {
			t.Fatalf("split of data-1 in the restored cluster made %s, want data-4", child)
		}
		for i := range keys {
			k := fmt.Sprintf("k%03d", i)
			if got, err := cl.Get(ctx, &metapb.GetRequest{Key: []byte(k)}); err != nil || got.Kv == nil || string(got.Kv.Value) != fmt.Sprintf("v%d", i) {
				t.Fatalf("get %s after the split of the restored data-1: %v (err %v)", k, got.GetKv(), err)
			}
		}
	}
}

// badFiles checks that a damaged backup file (a flipped byte in a
// group's data or in the manifest, a truncated file, another version) is
// refused with an error naming what is wrong, and that nothing is written.
func badFiles(t *testing.T, dir, file string, man *client.BackupManifest) {
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	last := man.Groups[len(man.Groups)-1]
	manifestAt := last.Offset + last.Size
	data := man.Groups[len(man.Groups)-1]
	cases := []struct {
		name string
		make func([]byte) []byte
		want string
	}{
		{"flipped byte in a group", func(b []byte) []byte { b[data.Offset+data.Size/2] ^= 0x20; return b }, data.Group + ": checksum mismatch"},
		{"flipped byte in the manifest", func(b []byte) []byte { b[manifestAt+5] ^= 0x01; return b }, "manifest checksum mismatch"},
		{"truncated", func(b []byte) []byte { return b[:len(b)-100] }, "truncated"},
		{"another version", func(b []byte) []byte { return withManifest(t, b, manifestAt, `"version":1,`, `"version":9,`) }, "version 9"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad := filepath.Join(dir, fmt.Sprintf("bad%d.meta", i))
			if err := os.WriteFile(bad, tc.make(bytes.Clone(good)), 0o600); err != nil {
				t.Fatal(err)
			}
			data := filepath.Join(dir, fmt.Sprintf("restored%d", i))
			out, err := restoreCmd("--from", bad, "--id", "n1", "--data-dir", data, "--initial-cluster", "n1=127.0.0.1:1")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("restore: got error %v (output %q), want one saying %q", err, out, tc.want)
			}
			for _, p := range []string{data, data + ".restoring"} {
				if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("a refused restore left %s (stat: %v)", p, err)
				}
			}
		})
	}
	// A data directory in use is never overwritten.
	used := filepath.Join(dir, "used")
	if err := os.MkdirAll(filepath.Join(used, "db"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = restoreCmd("--from", file, "--id", "n1", "--data-dir", used, "--initial-cluster", "n1=127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore into a used directory: got %v, want a refusal saying it is not empty", err)
	}
}

// withManifest rewrites the manifest of backup file b (at offset at),
// replacing old with new, with a valid checksum.
func withManifest(t *testing.T, b []byte, at int64, old, new string) []byte {
	t.Helper()
	tail := b[len(b)-20:]
	mj := string(b[at : int64(len(b))-20])
	if !strings.Contains(mj, old) {
		t.Fatalf("manifest %s does not contain %s", mj, old)
	}
	mj = strings.Replace(mj, old, new, 1)
	out := append(bytes.Clone(b[:at]), mj...)
	out = binary.BigEndian.AppendUint64(out, uint64(len(mj)))
	out = binary.BigEndian.AppendUint32(out, crc32c([]byte(mj)))
	return append(out, tail[12:]...)
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }
