package sm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/metamq/meta/sm/logpb"
)

// --- helpers: a machine with its snapshot store, driven as raft drives them ---

type storeEnv struct {
	*env
	store *SnapStore
	lim   *Limiter
}

var testConf = raft.Configuration{Servers: []raft.Server{
	{Suffrage: raft.Voter, ID: "n1", Address: "n1:1"},
	{Suffrage: raft.Voter, ID: "n2", Address: "n2:1"},
}}

func newStoreEnv(t testing.TB, kind Kind) *storeEnv {
	t.Helper()
	se := &storeEnv{env: newEnv(t, kind)}
	se.openStore()
	return se
}

func (se *storeEnv) snapDir() string { return filepath.Join(se.dir, "snap") }

func (se *storeEnv) openStore() {
	se.t.Helper()
	s, err := NewSnapStore(SnapStoreConfig{Dir: se.snapDir(), Machine: se.m, Limiter: se.lim, FileBytes: 4 << 10})
	if err != nil {
		se.t.Fatalf("NewSnapStore: %v", err)
	}
	se.store = s
}

// restart reopens the database, the machine and the store, as a node
// restart does.
func (se *storeEnv) restart() {
	se.t.Helper()
	se.reopen()
	se.openStore()
}

// apply applies entries from..to, each putting key k<i> (and bumping the
// revision), in one batch.
func (se *storeEnv) apply(from, to uint64) []*raft.Log {
	se.t.Helper()
	var logs []*raft.Log
	for i := from; i <= to; i++ {
		logs = append(logs, entry(se.t, i, putOp(fmt.Sprintf("k%05d", i%300), fmt.Sprintf("v%d-%s", i, strings.Repeat("x", 100)))))
	}
	se.m.ApplyBatch(logs)
	return logs
}

// takeSnapshot does what raft's takeSnapshot does: FSM snapshot, then
// Persist into a sink of the store at raft's index.
func (se *storeEnv) takeSnapshot(index, term uint64) string {
	se.t.Helper()
	snap, err := se.m.Snapshot()
	if err != nil {
		se.t.Fatal(err)
	}
	defer snap.Release()
	sink, err := se.store.Create(raft.SnapshotVersionMax, index, term, testConf, 1, nil)
	if err != nil {
		se.t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		se.t.Fatal(err)
	}
	return sink.ID()
}

// send opens snapshot id to send it, as raft's sendLatestSnapshot does,
// and returns its metadata and bytes.
func (se *storeEnv) send(id string) (*raft.SnapshotMeta, []byte) {
	se.t.Helper()
	meta, rc, err := se.store.Open(id)
	if err != nil {
		se.t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		se.t.Fatal(err)
	}
	if int64(len(data)) != meta.Size {
		se.t.Fatalf("snapshot %s: streamed %d bytes, meta.Size says %d", id, len(data), meta.Size)
	}
	return meta, data
}

// receive stores a snapshot as raft's installSnapshot does (Create, copy,
// Close) and returns its id.
func (se *storeEnv) receive(meta *raft.SnapshotMeta, data []byte) (string, error) {
	se.t.Helper()
	sink, err := se.store.Create(meta.Version, meta.Index, meta.Term, meta.Configuration, meta.ConfigurationIndex, nil)
	if err != nil {
		se.t.Fatal(err)
	}
	if _, err := io.Copy(sink, bytes.NewReader(data)); err != nil {
		_ = sink.Cancel()
		return "", err
	}
	return sink.ID(), sink.Close()
}

// restore restores snapshot id as raft's FSM goroutine does: the reader
// Open returns is wrapped (raft counts the bytes read), then restored.
func (se *storeEnv) restore(id string) error {
	se.t.Helper()
	_, rc, err := se.store.Open(id)
	if err != nil {
		return err
	}
	defer rc.Close()
	return se.m.Restore(&wrapped{rc: rc})
}

// wrapped wraps a reader as raft's restore does (raft.ReadCloserWrapper).
type wrapped struct{ rc io.ReadCloser }

func (w *wrapped) Read(p []byte) (int, error)       { return w.rc.Read(p) }
func (w *wrapped) Close() error                     { return w.rc.Close() }
func (w *wrapped) WrappedReadCloser() io.ReadCloser { return w.rc }

var _ raft.ReadCloserWrapper = (*wrapped)(nil)

// installHolds installs a sent snapshot and checks that se then holds the
// state whose hash is want; what names the check. It returns se's hash.
func (se *storeEnv) installHolds(meta *raft.SnapshotMeta, data []byte, want StateHash, what string) StateHash {
	se.t.Helper()
	if err := se.install(meta, data); err != nil {
		se.t.Fatal(err)
	}
	got := se.hash()
	if got != want {
		se.t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
	return got
}

// install is receive then restore: InstallSnapshot on a follower.
func (se *storeEnv) install(meta *raft.SnapshotMeta, data []byte) error {
	se.t.Helper()
	id, err := se.receive(meta, data)
	if err != nil {
		return err
	}
	return se.restore(id)
}

// call returns what f returns, failing the test on its error.
func call[T any](se *storeEnv, f func() (T, error)) T {
	se.t.Helper()
	v, err := f()
	if err != nil {
		se.t.Fatal(err)
	}
	return v
}

func (se *storeEnv) list() []*raft.SnapshotMeta { return call(se, se.store.List) }
func (se *storeEnv) hash() StateHash            { return call(se, se.m.Hash) }
func (se *storeEnv) needsRestore() bool         { return call(se, se.store.NeedsRestore) }

// dirBytes is the size of every file under dir.
func dirBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += info.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func files(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// --- markers: no copy of the data ---

// A local snapshot is a marker of a few hundred bytes however much data
// the group holds; newer markers replace older ones.
func TestLocalSnapshotIsAMarker(t *testing.T) {
	se := newStoreEnv(t, KindData)
	se.apply(1, 2000) // ~300 keys of ~110 bytes, rewritten
	first := se.takeSnapshot(2000, 1)
	se.apply(2001, 2100)
	id := se.takeSnapshot(2101, 2) // raft's index may pass the machine's (no-op entries)
	l := se.list()
	if len(l) != 1 || l[0].ID != id || l[0].Index != 2101 || l[0].Term != 2 || l[0].ConfigurationIndex != 1 ||
		len(l[0].Configuration.Servers) != 2 {
		t.Fatalf("List after two snapshots: got %+v, want only %s at 2101, term 2, with the configuration", l, id)
	}
	if n := dirBytes(t, se.snapDir()); n > 4096 {
		t.Fatalf("snapshot directory: %d bytes (%v), want a marker of well under 4 KiB", n, files(t, se.snapDir()))
	}
	if _, err := os.Stat(filepath.Join(se.snapDir(), "snapshots", first)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the superseded marker %s: stat %v, want gone", first, err)
	}
	var sm storedMeta
	b, _ := os.ReadFile(filepath.Join(se.snapDir(), "snapshots", id, metaFile))
	if err := json.Unmarshal(b, &sm); err != nil || sm.Format != formatMarker || sm.Applied.Index != 2100 {
		t.Fatalf("marker meta: %+v (err %v), want format marker, applied 2100", sm, err)
	}
	if se.needsRestore() {
		t.Fatal("NeedsRestore with the data at the marker's applied index: got true")
	}
	// Machine.Snapshot refuses while a restore is incomplete.
	if err := se.m.space.Put(keyRestoring, []byte{1}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := se.m.Snapshot(); err == nil {
		t.Fatal("Snapshot during an incomplete restore: got nil error")
	}
}

// --- shipping files: the round trip raft makes ---

// A marker opened for sending is exported from the data as SST files and
// streamed; the follower stores the files and ingests them; it then holds
// the leader's state, the received files are gone and its snapshot is a
// marker; the export's files are gone on the leader too.
func TestSendAndInstall(t *testing.T) {
	for _, kind := range []Kind{KindData, KindOffset, KindMetadata} {
		t.Run(kind.String(), func(t *testing.T) {
			leader := newStoreEnv(t, kind)
			var ops []*logpb.Op
			switch kind {
			case KindData:
				for i := range 200 {
					ops = append(ops, putOp(fmt.Sprintf("key-%04d", i), strings.Repeat("v", i)))
				}
			case KindOffset:
				for i := range 200 {
					ops = append(ops, commitOp(&logpb.OffsetEntry{Group: "g", Topic: "t", Partition: int32(i), Offset: int64(i)}))
				}
			case KindMetadata:
				ops = []*logpb.Op{{Op: &logpb.Op_ClusterInit{ClusterInit: &logpb.ClusterInit{ClusterId: "c", OffsetGroups: 1, DataGroups: 1,
					Members: []*logpb.MemberPut{{Id: "n1", Addr: "a:1"}}}}}}
			}
			leader.m.Apply(entry(t, 7, ops...))
			id := leader.takeSnapshot(7, 1)
			meta, data := leader.send(id)
			if got := files(t, filepath.Join(leader.snapDir(), "work")); len(got) != 0 {
				t.Fatalf("leader's work directory after the send: %v, want empty", got)
			}

			follower := newStoreEnv(t, kind)
			follower.m.Apply(entry(t, 1, ops[0])) // state the restore must replace
			follower.installHolds(meta, data, leader.hash(), "follower's state")
			if got, want := dump(t, follower.m), dump(t, leader.m); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("follower's data:\n got %v\nwant %v", got, want)
			}
			l := follower.list()
			if len(l) != 1 || l[0].Index != 7 || l[0].Term != 1 {
				t.Fatalf("follower's snapshots: %+v, want one at 7", l)
			}
			if n := dirBytes(t, follower.snapDir()); n > 4096 {
				t.Fatalf("follower's snapshot directory after the restore: %d bytes (%v), want only a marker", n, files(t, follower.snapDir()))
			}
			if follower.needsRestore() {
				t.Fatal("NeedsRestore after a completed restore: got true")
			}
			// The restored state survives a restart, and can be sent on.
			follower.restart()
			if got, want := follower.hash(), leader.hash(); got != want {
				t.Fatalf("follower after restart: got %+v, want %+v", got, want)
			}
			meta2, data2 := follower.send(follower.list()[0].ID)
			third := newStoreEnv(t, kind)
			third.installHolds(meta2, data2, leader.hash(), "a snapshot sent on by the follower")
		})
	}
}

// An empty group (nothing but its ownership record) ships, and the
// follower's old state goes.
func TestSendEmptyGroup(t *testing.T) {
	leader := newStoreEnv(t, KindData)
	leader.m.ApplyBatch([]*raft.Log{{Index: 1, Term: 1, Type: raft.LogConfiguration}})
	meta, data := leader.send(leader.takeSnapshot(1, 1))
	follower := newStoreEnv(t, KindData)
	follower.m.Apply(entry(t, 1, putOp("stale", "x")))
	if got := follower.installHolds(meta, data, leader.hash(), "follower"); got.Keys != 1 {
		t.Fatalf("follower: got %+v, want the ownership record only", got)
	}
}

// The fuzzy snapshot: raft took the snapshot at index I, the data it sends
// is newer (X > I, written after the marker). The follower installs data
// at X; raft then re-delivers I+1..X, which the machine skips (none is
// applied twice: revisions and compare-and-swaps would show it), and
// after the next entries both replicas hold the same state.
func TestFuzzySnapshotIsSafe(t *testing.T) {
	leader := newStoreEnv(t, KindData)
	follower := newStoreEnv(t, KindData)
	var logs []*raft.Log
	add := func(l *raft.Log) {
		logs = append(logs, l)
		leader.m.Apply(l)
	}
	add(entry(t, 1, putOp("counter", "0")))
	add(entry(t, 2, casOp("counter", "0", "1", false)))
	const I = 2
	id := leader.takeSnapshot(I, 1)
	// After the marker, before the send: entries I+1..X.
	add(entry(t, 3, casOp("counter", "1", "2", false), putOp("a", "1")))
	add(entry(t, 4, delOp("a"), casOp("counter", "2", "3", false)))
	add(&raft.Log{Index: 5, Term: 1, Type: raft.LogConfiguration})
	add(entry(t, 6, putOp("b", "1")))
	const X = 6
	meta, data := leader.send(id)
	if meta.Index != I {
		t.Fatalf("sent snapshot's raft index: got %d, want %d", meta.Index, I)
	}
	if err := follower.install(meta, data); err != nil {
		t.Fatal(err)
	}
	if follower.m.AppliedIndex() != X {
		t.Fatalf("follower's applied index after the install: got %d, want the view's %d", follower.m.AppliedIndex(), X)
	}
	// raft re-delivers from I+1: every entry up to X is skipped.
	for i, r := range follower.m.ApplyBatch(logs[I:]) {
		if r != nil {
			t.Fatalf("re-delivered entry %d was applied again: %+v", logs[I+i].Index, r)
		}
	}
	// New entries apply on both alike.
	next := []*raft.Log{entry(t, 7, casOp("counter", "3", "4", false)), entry(t, 8, putOp("c", "1"))}
	for _, l := range next {
		lr, fr := results(t, leader.m.Apply(l)), results(t, follower.m.Apply(l))
		if fmt.Sprint(lr) != fmt.Sprint(fr) {
			t.Fatalf("entry %d: leader %v, follower %v", l.Index, lr, fr)
		}
		if lr[0].Code != logpb.Code_CODE_OK {
			t.Fatalf("entry %d on the leader: %v, want OK", l.Index, lr[0])
		}
	}
	if lh, fh := leader.hash(), follower.hash(); lh != fh {
		t.Fatalf("state after the fuzzy install: leader %+v, follower %+v", lh, fh)
	}
}

// --- corrupt, truncated and stale snapshots change nothing ---

// corruptions of a file stream with two or more files, each by name.
func corruptions(t *testing.T, good []byte, h *snapHeader) map[string][]byte {
	t.Helper()
	hb, _ := h.encode()
	firstFile := len(hb)
	last := h.Files[len(h.Files)-1]
	lastFile := len(good) - int(last.Size)
	withHeader := func(mod func(*snapHeader)) []byte {
		var c snapHeader
		b, _ := json.Marshal(h)
		_ = json.Unmarshal(b, &c)
		mod(&c)
		nb, _ := c.encode()
		return append(nb, good[firstFile:]...)
	}
	return map[string][]byte{
		"empty":            nil,
		"magic":            append([]byte("XXXXXXXX"), good[8:]...),
		"header length":    append(append([]byte(fileMagic), 0xff, 0xff, 0xff, 0xff), good[12:]...),
		"header flipped":   flip(good, 20),
		"header truncated": good[:firstFile-2],
		"first file flip":  flip(good, firstFile+10),
		"last file flip":   flip(good, lastFile+int(last.Size)/2),
		"truncated":        good[:len(good)-5],
		"a file missing":   good[:lastFile],
		"trailing bytes":   append(append([]byte(nil), good...), 0),
		"path in header":   withHeader(func(c *snapHeader) { c.Files[0].Name = "../../000001.sst" }),
		"version":          withHeader(func(c *snapHeader) { c.Version = 3 }),
		"kind":             withHeader(func(c *snapHeader) { c.Kind = KindOffset }),
		"size":             withHeader(func(c *snapHeader) { c.Files[0].Size++ }),
	}
}

// Restore of a corrupt, truncated or foreign snapshot returns
// ErrBadSnapshot and leaves the old state untouched and whole: same data,
// same applied index, no restore marked incomplete. Whether it arrives as
// a stream (Machine.Restore) or through the store (the files are checked
// on arrival, and again before they are ingested).
func TestCorruptSnapshotLeavesStateUntouched(t *testing.T) {
	src := newStoreEnv(t, KindData)
	src.apply(1, 400)
	id := src.takeSnapshot(400, 1)
	meta, good := src.send(id)
	h, err := readHeader(bytes.NewReader(good[8:]))
	if err != nil || len(h.Files) < 2 {
		t.Fatalf("the good stream: header %+v, err %v; want two files or more", h, err)
	}
	dst := newStoreEnv(t, KindData)
	dst.apply(1, 3)
	dst.m.Apply(entry(t, 4, putOp("mine", "1")))
	before := dst.hash()
	untouched := func(what string) {
		t.Helper()
		inc, err := dst.m.RestoreIncomplete()
		if got := dst.hash(); got != before || dst.m.AppliedIndex() != 4 || inc || err != nil {
			t.Fatalf("%s: state %+v at %d (incomplete %v, %v), want %+v at 4, whole", what, got, dst.m.AppliedIndex(), inc, err, before)
		}
	}
	for name, data := range corruptions(t, good, h) {
		t.Run(name, func(t *testing.T) {
			err := dst.m.Restore(io.NopCloser(bytes.NewReader(data)))
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("Restore: got %v, want ErrBadSnapshot", err)
			}
			untouched("after Restore")
			// Through the store: refused on arrival, nothing kept.
			before := dst.list()
			if _, err := dst.receive(meta, data); !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("receive: got %v, want ErrBadSnapshot", err)
			}
			if got := dst.list(); len(got) != len(before) {
				t.Fatalf("snapshots after a refused receive: %+v, want %+v", got, before)
			}
			untouched("after receive")
		})
	}
	// A received snapshot damaged on disk before its restore: refused
	// before anything changes, and deleted.
	for _, damage := range []string{"flip", "truncate", "remove"} {
		t.Run("on disk "+damage, func(t *testing.T) {
			rid, err := dst.receive(meta, good)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dst.snapDir(), "snapshots", rid, h.Files[len(h.Files)-1].Name)
			switch damage {
			case "flip":
				b, _ := os.ReadFile(path)
				_ = os.WriteFile(path, flip(b, len(b)/2), 0o644)
			case "truncate":
				_ = os.Truncate(path, h.Files[len(h.Files)-1].Size-1)
			case "remove":
				_ = os.Remove(path)
			}
			if err := dst.restore(rid); !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("restore: got %v, want ErrBadSnapshot", err)
			}
			untouched("after a refused restore")
			for _, m := range dst.list() {
				if m.ID == rid {
					t.Fatalf("the refused snapshot %s is still listed", rid)
				}
			}
		})
	}
	// Another kind's snapshot.
	off := newStoreEnv(t, KindOffset)
	off.m.Apply(entry(t, 9, commitOp(&logpb.OffsetEntry{Group: "g", Topic: "t", Offset: 1})))
	if err := dst.m.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, off.m)))); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("restore of an offset snapshot into a data group: got %v, want ErrBadSnapshot", err)
	}
	untouched("after another kind's snapshot")
	// And a good one restores (the cases above failed for their damage).
	if err := dst.m.Restore(io.NopCloser(bytes.NewReader(good))); err != nil {
		t.Fatal(err)
	}
	if got, want := dst.hash(), src.hash(); got != want {
		t.Fatalf("after the good snapshot: got %+v, want %+v", got, want)
	}
}

// A snapshot older than the applied state is refused (ErrStaleSnapshot)
// and changes nothing; the stale-snapshot handler hears of it, once per
// refusal, with the snapshot's raft index. Through the store it is refused
// as soon as its header arrives. One at the applied index is installed;
// after an interrupted restore any snapshot is.
func TestRestoreRefusesStaleSnapshot(t *testing.T) {
	src := newStoreEnv(t, KindData)
	src.m.Apply(entry(t, 3, putOp("a", "1")))
	oldMeta, old := src.send(src.takeSnapshot(3, 1))
	src.m.Apply(entry(t, 4, putOp("b", "2")))
	src.m.Apply(entry(t, 5, putOp("a", "3")))
	sameMeta, same := src.send(src.takeSnapshot(5, 1))

	e := newStoreEnv(t, KindData)
	for _, l := range []*raft.Log{entry(t, 3, putOp("a", "1")), entry(t, 4, putOp("b", "2")), entry(t, 5, putOp("a", "3"))} {
		e.m.Apply(l)
	}
	before := e.hash()
	var heard [][2]uint64
	e.m.OnStaleSnapshot(func(snap, applied uint64) { heard = append(heard, [2]uint64{snap, applied}) })

	err := e.m.Restore(io.NopCloser(bytes.NewReader(old)))
	if !errors.Is(err, ErrStaleSnapshot) {
		t.Fatalf("restore of the index-3 snapshot at index 5: got %v, want %v", err, ErrStaleSnapshot)
	}
	if h := e.hash(); h != before || e.m.AppliedIndex() != 5 {
		t.Fatalf("after a refused restore: got %+v at %d, want %+v at 5", h, e.m.AppliedIndex(), before)
	}
	// A marker of an old state (what Machine.Snapshot persists) is refused
	// as stale too.
	var mk memSink
	e.m.index.Store(3)
	snap, _ := e.m.Snapshot()
	e.m.index.Store(5)
	if err := snap.Persist(&mk); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Restore(io.NopCloser(bytes.NewReader(mk.Bytes()))); !errors.Is(err, ErrStaleSnapshot) {
		t.Fatalf("restore of an index-3 marker at 5: got %v, want %v", err, ErrStaleSnapshot)
	}
	// Through the store, the stream is refused on arrival.
	if _, err := e.receive(oldMeta, old); !errors.Is(err, ErrStaleSnapshot) {
		t.Fatalf("receive of the index-3 snapshot at 5: got %v, want %v", err, ErrStaleSnapshot)
	}
	if len(e.list()) != 0 {
		t.Fatalf("snapshots after a refused receive: %+v, want none", e.list())
	}
	if want := [][2]uint64{{3, 5}, {3, 5}, {3, 5}}; fmt.Sprint(heard) != fmt.Sprint(want) {
		t.Fatalf("stale-snapshot handler: got %v, want %v", heard, want)
	}
	// Still refused after a restart (the applied index is stored).
	e.restart()
	if err := e.m.Restore(io.NopCloser(bytes.NewReader(old))); !errors.Is(err, ErrStaleSnapshot) {
		t.Fatalf("after restart: got %v, want %v", err, ErrStaleSnapshot)
	}
	// A snapshot of the applied index itself is installed.
	if err := e.install(sameMeta, same); err != nil {
		t.Fatalf("restore at the applied index: %v", err)
	}
	// After an interrupted restore any snapshot may replace the state.
	e.m.afterClear = func() error { return errors.New("crash") }
	if err := e.m.Restore(io.NopCloser(bytes.NewReader(same))); err == nil {
		t.Fatal("interrupted restore: got nil error")
	}
	e.m.afterClear = nil
	if err := e.m.Restore(io.NopCloser(bytes.NewReader(old))); err != nil {
		t.Fatalf("restore after an interrupted one: %v", err)
	}
	if e.m.AppliedIndex() != 3 {
		t.Fatalf("applied after restoring the index-3 snapshot: got %d, want 3", e.m.AppliedIndex())
	}
}

// receivedFromLeader starts the crash tests: a leader that applied entries
// 1..300 sends its snapshot to a new follower that applied and snapshotted
// entries 1..own (nothing when own is 0); the follower stores it and has
// not restored it yet. It returns both, the received snapshot's id and the
// stream the leader sent.
func receivedFromLeader(t *testing.T, own uint64) (leader, f *storeEnv, id string, data []byte) {
	t.Helper()
	leader = newStoreEnv(t, KindData)
	leader.apply(1, 300)
	meta, data := leader.send(leader.takeSnapshot(300, 1))
	f = newStoreEnv(t, KindData)
	if own > 0 {
		f.apply(1, own)
		f.takeSnapshot(own, 1)
	}
	id, err := f.receive(meta, data)
	if err != nil {
		t.Fatal(err)
	}
	return leader, f, id, data
}

// A crash between clearing the old data and ingesting the new leaves the
// restore marked incomplete and the received files in place: at start the
// node restores the same snapshot again (NeedsRestore, List's newest) and
// ends with the leader's state; the files are deleted only then.
func TestCrashBetweenClearAndIngestReRunsRestore(t *testing.T) {
	leader, f, id, _ := receivedFromLeader(t, 10)
	cleared := false
	f.m.afterClear = func() error {
		// The old data is gone, the new not in yet.
		if got := dump(t, f.m); len(got) != 0 {
			t.Errorf("after the clear: %d keys, want none", len(got))
		}
		cleared = true
		return errors.New("simulated crash")
	}
	if err := f.restore(id); err == nil || !cleared {
		t.Fatalf("restore with a crash after the clear: err %v, cleared %v", err, cleared)
	}

	f.restart() // the process died: the database and the store are reopened
	if inc, err := f.m.RestoreIncomplete(); !inc || err != nil {
		t.Fatalf("RestoreIncomplete after the crash: got %v (%v), want true", inc, err)
	}
	if !f.needsRestore() {
		t.Fatal("NeedsRestore after the crash: got false")
	}
	if l := f.list(); l[0].ID != id {
		t.Fatalf("newest snapshot after the crash: %s, want the received %s", l[0].ID, id)
	}
	if _, err := f.m.Snapshot(); err == nil {
		t.Fatal("a local snapshot while the restore is incomplete: got nil error")
	}
	// raft restores the newest snapshot at start.
	if err := f.restore(id); err != nil {
		t.Fatal(err)
	}
	if got, want := f.hash(), leader.hash(); got != want {
		t.Fatalf("after the restore at start: got %+v, want %+v", got, want)
	}
	if f.needsRestore() {
		t.Fatal("NeedsRestore after the restore at start: got true")
	}
	l := f.list()
	if len(l) != 1 || l[0].ID != id {
		t.Fatalf("snapshots after the restore: %+v, want only %s", l, id)
	}
	if got := files(t, filepath.Join(f.snapDir(), "snapshots")); len(got) != 1 {
		t.Fatalf("snapshot files after the restore: %v, want only the marker's meta.json", got)
	}
}

// A crash after the ingestion (the restore is complete in the database)
// but before the store turned the received snapshot into a marker: at
// start the state is whole and the store tidies the files away.
func TestCrashAfterIngest(t *testing.T) {
	leader, f, id, data := receivedFromLeader(t, 0)
	// The restore without its store: the database has it, the store does
	// not know.
	if err := f.m.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	f.restart()
	if f.needsRestore() {
		t.Fatal("NeedsRestore after a complete restore: got true")
	}
	if got := files(t, filepath.Join(f.snapDir(), "snapshots")); len(got) != 1 {
		t.Fatalf("snapshot files at start: %v, want only %s's meta.json", got, id)
	}
	if got, want := f.hash(), leader.hash(); got != want {
		t.Fatalf("state: got %+v, want %+v", got, want)
	}
}

// A crash after a received snapshot was stored, before its restore began:
// NeedsRestore makes raft restore it at start.
func TestCrashBeforeRestore(t *testing.T) {
	leader, f, id, _ := receivedFromLeader(t, 5)
	f.restart()
	if !f.needsRestore() || f.list()[0].ID != id {
		t.Fatalf("at start: NeedsRestore %v, newest %s; want true, %s", f.needsRestore(), f.list()[0].ID, id)
	}
	if err := f.restore(id); err != nil {
		t.Fatal(err)
	}
	if got, want := f.hash(), leader.hash(); got != want {
		t.Fatalf("state: got %+v, want %+v", got, want)
	}
}

// Sending holds the store's limiter's rate (on the limiter's clock).
func TestSendIsLimited(t *testing.T) {
	lim, clock := fakeLimiter(1 << 20)
	leader := &storeEnv{env: newEnv(t, KindData), lim: lim}
	leader.openStore()
	leader.apply(1, 2000)
	id := leader.takeSnapshot(2000, 1)
	t0 := clock.now()
	meta, _ := leader.send(id)
	want := max(time.Duration(float64(meta.Size)/(1<<20)*float64(time.Second))-lim.burst, 0)
	if d := clock.since(t0); d < want-time.Millisecond || d > want+time.Millisecond {
		t.Fatalf("sending %d bytes at 1 MiB/s took %v on the limiter's clock, want %v", meta.Size, d, want)
	}
}

// --- upgrade from raft's FileSnapshotStore with METASNP1 streams ---

// legacyFixture copies testdata/legacy-cc18dd7 (made by the code before
// this store) into a store directory and returns the state hash it holds.
func legacyFixture(t *testing.T, dir string) (id string, want StateHash) {
	t.Helper()
	src := filepath.Join("testdata", "legacy-cc18dd7")
	b, err := os.ReadFile(filepath.Join(src, "want.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "snapshots"))
	if len(entries) != 1 {
		t.Fatalf("fixture: %d snapshots, want 1", len(entries))
	}
	return entries[0].Name(), want
}

// A node whose state is behind an old-format snapshot (a restore
// interrupted before the upgrade, or never begun) lists it, needs a
// restore, restores it, and the snapshot then becomes a marker.
func TestLegacySnapshotRestoredAfterUpgrade(t *testing.T) {
	for _, interrupted := range []bool{false, true} {
		t.Run(fmt.Sprintf("interrupted=%v", interrupted), func(t *testing.T) {
			e := newEnv(t, KindData)
			se := &storeEnv{env: e}
			id, want := legacyFixture(t, se.snapDir())
			if interrupted { // the old code's restore stopped half way
				e.m.Apply(entry(t, 60, putOp("half", "restored")))
				if err := e.m.space.Put(keyRestoring, []byte{1}, true); err != nil {
					t.Fatal(err)
				}
				se.restart()
			} else {
				se.openStore()
			}
			l := se.list()
			if len(l) != 1 || l[0].ID != id || l[0].Index != 52 || l[0].Term != 1 || len(l[0].Configuration.Servers) != 3 {
				t.Fatalf("List: %+v, want the legacy snapshot %s at 52 with 3 servers", l, id)
			}
			if !se.needsRestore() {
				t.Fatal("NeedsRestore: got false, want true")
			}
			if err := se.restore(id); err != nil {
				t.Fatal(err)
			}
			if got := se.hash(); got != want {
				t.Fatalf("restored state: got %+v, want %+v", got, want)
			}
			l = se.list()
			if len(l) != 1 || l[0].ID != id || l[0].Index != 52 || len(l[0].Configuration.Servers) != 3 {
				t.Fatalf("List after the restore: %+v, want %s still at 52", l, id)
			}
			if got := files(t, filepath.Join(se.snapDir(), "snapshots")); len(got) != 1 {
				t.Fatalf("after the restore: %v, want only the marker's meta.json", got)
			}
			if se.needsRestore() {
				t.Fatal("NeedsRestore after the restore: got true")
			}
		})
	}
}

// A node already at or past its old-format snapshot (the usual upgrade)
// turns it into a marker when the store opens: the copy's space is freed
// at once, raft's metadata is kept.
func TestLegacySnapshotBecomesMarkerAtUpgrade(t *testing.T) {
	e := newEnv(t, KindData)
	se := &storeEnv{env: e}
	id, want := legacyFixture(t, se.snapDir())
	// The node's state: the fixture's, restored the old way (a stream).
	state, err := os.ReadFile(filepath.Join(se.snapDir(), "snapshots", id, legacyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.Restore(io.NopCloser(bytes.NewReader(state))); err != nil {
		t.Fatal(err)
	}
	if got := se.hash(); got != want {
		t.Fatalf("state restored from the legacy stream: got %+v, want %+v", got, want)
	}
	e.m.Apply(entry(t, 53, putOp("later", "1")))
	before := dirBytes(t, se.snapDir())
	se.openStore()
	l := se.list()
	if len(l) != 1 || l[0].ID != id || l[0].Index != 52 || l[0].Term != 1 || l[0].ConfigurationIndex != 1 || len(l[0].Configuration.Servers) != 3 {
		t.Fatalf("List: %+v, want %s at 52 with its configuration", l, id)
	}
	if after := dirBytes(t, se.snapDir()); after >= before || after > 4096 {
		t.Fatalf("snapshot directory: %d bytes after the upgrade, %d before; want a marker only", after, before)
	}
	if se.needsRestore() {
		t.Fatal("NeedsRestore: got true")
	}
	// The marker can be sent: it carries the current data.
	meta, data := se.send(id)
	other := newStoreEnv(t, KindData)
	other.installHolds(meta, data, se.hash(), "sent from the converted marker")
}

// An old leader sends a METASNP1 stream: the store keeps it as it came,
// Restore converts its records into files and ingests them.
func TestLegacyStreamFromAnOldLeader(t *testing.T) {
	e := newStoreEnv(t, KindData)
	dir := t.TempDir()
	id, want := legacyFixture(t, dir)
	state, err := os.ReadFile(filepath.Join(dir, "snapshots", id, legacyFile))
	if err != nil {
		t.Fatal(err)
	}
	meta := &raft.SnapshotMeta{Version: 1, Index: 52, Term: 1, Configuration: testConf, ConfigurationIndex: 1}
	if err := e.install(meta, state); err != nil {
		t.Fatal(err)
	}
	if got := e.hash(); got != want {
		t.Fatalf("state: got %+v, want %+v", got, want)
	}
	// A damaged one changes nothing.
	e2 := newStoreEnv(t, KindData)
	e2.m.Apply(entry(t, 1, putOp("mine", "1")))
	before := e2.hash()
	for _, bad := range [][]byte{flip(state, len(state)/2), state[:len(state)-3]} {
		if err := e2.install(meta, bad); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("install of a damaged legacy stream: got %v, want ErrBadSnapshot", err)
		}
		if got := e2.hash(); got != before {
			t.Fatalf("after a damaged legacy stream: got %+v, want %+v", got, before)
		}
	}
}

// Open refuses an old-format snapshot whose state.bin does not match the
// CRC FileSnapshotStore recorded.
func TestLegacySnapshotCRC(t *testing.T) {
	e := newEnv(t, KindData)
	se := &storeEnv{env: e}
	id, _ := legacyFixture(t, se.snapDir())
	path := filepath.Join(se.snapDir(), "snapshots", id, legacyFile)
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, flip(b, 100), 0o644); err != nil {
		t.Fatal(err)
	}
	se.openStore()
	if _, _, err := se.store.Open(id); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("Open of a legacy snapshot with a bad CRC: got %v, want ErrBadSnapshot", err)
	}
}

// The marker format round-trips and is checked.
func TestMarkerFormat(t *testing.T) {
	st := &logpb.AppliedState{Index: 1 << 40, Term: 7, Revision: 99}
	b := encodeMarker(KindOffset, st)
	kind, got, err := decodeMarker(b)
	if err != nil || kind != KindOffset || got.Index != st.Index || got.Term != 7 || got.Revision != 99 {
		t.Fatalf("decode: got %v %+v %v", kind, got, err)
	}
	for i := range b {
		if _, _, err := decodeMarker(flip(b, i)); err == nil {
			t.Fatalf("a marker with byte %d flipped decoded", i)
		}
	}
	if _, _, err := decodeMarker(b[:len(b)-1]); err == nil {
		t.Fatal("a truncated marker decoded")
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], 1)
	if _, err := readHeader(bytes.NewReader(n[:])); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("a header cut short: got %v, want ErrBadSnapshot", err)
	}
}

func flip(b []byte, i int) []byte {
	out := append([]byte(nil), b...)
	out[i] ^= 0x55
	return out
}
