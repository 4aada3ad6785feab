package metanode_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/verify/poll"
)

// A byte flip in a follower's SST file, found at run time (the node
// starts: the damage is in data blocks only): reads of the damaged keys on
// that node fail, never answer wrong data; RocksDB meets the damage in a
// read or a compaction, and the node stops the group (a compaction's
// background error refuses every write: then every group of the node
// stops, sm.ErrStorage) without dying: hashicorp/raft, which panics on a
// failed stable-store write ("failed to save current term"), is stopped
// before it sees the failure (storage.go). The other replicas go on
// serving every acknowledged write, and the damaged node stays up, not
// ready, for the runbook to replace its copy.
func TestCorruptSSTFoundAtRunTime(t *testing.T) {
	const group = "data-0"
	c := metanodetest.Start(t, metanodetest.Options{DataGroups: 1})
	cl := c.Client("")
	rnd := rand.New(rand.NewPCG(5, 6))
	want := map[string][]byte{}
	var keys []string
	for i := range 400 {
		k := fmt.Sprintf("k%04d", i)
		v := make([]byte, 1024)
		for j := range v {
			v[j] = byte(rnd.Uint32())
		}
		if _, err := cl.Put(ctxT(t, 20*time.Second), &metapb.PutRequest{Key: []byte(k), Value: v}); err != nil {
			t.Fatal(err)
		}
		want[k] = v
		keys = append(keys, k)
	}
	leader := c.WaitLeader(group, 30*time.Second)
	f := "n1"
	if leader == f {
		f = "n2"
	}
	waitCaughtUp(t, c, f, group)
	if err := c.Running(f).FlushForTest(); err != nil {
		t.Fatal(err)
	}
	c.Stop(f)

	// Flip 4 bytes at 8 places over the first 80% of every table file of
	// the group's data (its column family's name is in the file's
	// properties): data blocks (the KV records and the change log), not
	// the index, properties or footer read when the file opens.
	ssts, _ := filepath.Glob(filepath.Join(c.Get(f).Dir, "db", "*.sst"))
	damaged := 0
	for _, p := range ssts {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(group+"/data")) || len(b) < 64<<10 {
			continue
		}
		for at := range 8 {
			off := len(b) * (1 + 2*at) / 20
			for i := off; i < off+4; i++ {
				b[i] ^= 0xff
			}
		}
		t.Logf("damaged %s (%d bytes)", filepath.Base(p), len(b))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		damaged++
	}
	if damaged == 0 {
		t.Fatalf("no table file of %s's data among %v on %s", group, ssts, f)
	}
	if err := c.Restart(f); err != nil {
		t.Fatalf("%s with a damaged data block: refused to start (%v); this test wants the damage found at run time", f, err)
	}

	// Reads served by the damaged node (stale reads: from its own replica,
	// not forwarded): a value is the right one, or an error.
	pinned := c.Client(f)
	local := func(k string) *metapb.GetRequest {
		return &metapb.GetRequest{Key: []byte(k), Consistency: metapb.ReadConsistency_READ_CONSISTENCY_STALE}
	}
	// Once its replica halted the node refuses every read of the group
	// (retried elsewhere by a client: a pinned one retries until its
	// deadline), so reading stops there.
	failed, halted := 0, false
	for _, k := range keys {
		if c.Running(f).Halted()[group] != nil {
			halted = true
			break
		}
		resp, err := pinned.Get(ctxT(t, 5*time.Second), local(k))
		if err != nil {
			failed++
			continue
		}
		if resp.Kv == nil || !bytes.Equal(resp.Kv.Value, want[k]) {
			t.Fatalf("%s served %s from a damaged file: got %d bytes, want the acknowledged value", f, k, len(resp.GetKv().GetValue()))
		}
	}
	if failed == 0 && !halted {
		t.Fatalf("no read on %s failed and %s did not halt there: the damage was not found", f, group)
	}
	t.Logf("%d reads on %s failed on the damage, halted before the last: %v", failed, f, halted)

	// Writes over every key: the damaged replica halts the group when its
	// apply reads the damaged block; the others apply them.
	for _, k := range keys {
		want[k] = []byte("v2-" + k)
		if _, err := cl.Put(ctxT(t, 20*time.Second), &metapb.PutRequest{Key: []byte(k), Value: want[k]}); err != nil {
			t.Fatalf("put %s after the damage: %v", k, err)
		}
	}
	poll.For(t, group+" halted on "+f+" by a storage failure", 30*time.Second, func() error {
		err := c.Running(f).Halted()[group]
		if err == nil {
			return fmt.Errorf("%s not halted on %s", group, f)
		}
		if !errors.Is(err, sm.ErrStorage) || !strings.Contains(err.Error(), "orruption") {
			t.Fatalf("%s halted on %s by %v, want a storage failure naming the corruption", group, f, err)
		}
		return nil
	})
	for g, err := range c.Running(f).Halted() {
		if !errors.Is(err, sm.ErrStorage) {
			t.Errorf("%s halted on %s by %v, want only storage failures there", g, f, err)
		}
	}
	if err := c.Running(f).Ready(); err == nil {
		t.Errorf("%s ready with its replica of %s halted, want not ready", f, group)
	} else {
		t.Logf("%s not ready: %v", f, err)
	}
	for _, id := range c.IDs() {
		if id == f {
			continue
		}
		if h := c.Running(id).Halted(); len(h) != 0 {
			t.Fatalf("%s halted %v, want only the damaged node's replica halted", id, h)
		}
		other := c.Client(id)
		for _, k := range keys {
			resp, err := other.Get(ctxT(t, 20*time.Second), &metapb.GetRequest{Key: []byte(k)})
			if err != nil || resp.Kv == nil || !bytes.Equal(resp.Kv.Value, want[k]) {
				t.Fatalf("%s after the damage on %s: get %s: %v, %v; want the last acknowledged value", id, f, k, resp.GetKv(), err)
			}
		}
	}
	// The halted replica answers no read, stale or linearizable (a
	// sample of keys: each is refused the same way, and a pinned client
	// retries a refusal until its deadline).
	for _, k := range keys[:4] {
		for _, req := range []*metapb.GetRequest{local(k), {Key: []byte(k)}} {
			resp, err := pinned.Get(ctxT(t, 3*time.Second), req)
			if err == nil {
				t.Fatalf("halted %s served %s (%v): got %q, want the read refused", f, k, req.Consistency, resp.GetKv().GetValue())
			}
		}
	}
}
