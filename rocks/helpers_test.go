package rocks

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
)

// testOptions are small so that the many databases the tests open stay
// cheap; they are valid and exercise the same code paths as the defaults.
func testOptions(dir string) Options {
	o := DefaultOptions(dir)
	o.BlockCacheBytes = 8 << 20
	o.WriteBufferBytes = 8 << 20
	o.CFWriteBufferBytes = 1 << 20
	return o
}

// openTest opens a database in a fresh directory and closes it at cleanup.
func openTest(t testing.TB, groups ...string) *DB {
	t.Helper()
	return openAt(t, t.TempDir(), groups...)
}

func openAt(t testing.TB, dir string, groups ...string) *DB {
	t.Helper()
	db, err := Open(testOptions(dir), groups)
	if err != nil {
		t.Fatalf("Open(%s, %v): %v", dir, groups, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// mustOpen returns what open (a DB method such as Data) returns for
// group, failing the test on its error.
func mustOpen[T any](t testing.TB, open func(string) (T, error), group string) T {
	t.Helper()
	v, err := open(group)
	if err != nil {
		t.Fatalf("group %q: %v", group, err)
	}
	return v
}

func mustData(t testing.TB, db *DB, g string) *Space { t.Helper(); return mustOpen(t, db.Data, g) }

func mustPut(t testing.TB, s *Space, k, v string) {
	t.Helper()
	if err := s.Put([]byte(k), []byte(v), false); err != nil {
		t.Fatalf("Put(%q): %v", k, err)
	}
}

// storeCalls are the calls on a space (directly, through a batch and
// through a snapshot), a log store and a stable store that a closed
// database or a dropped group must refuse; the tests add their own.
func storeCalls(s *Space, b *Batch, sn *Snapshot, ls *LogStore, st *StableStore) map[string]func() error {
	noop := func(k, v []byte) bool { return true }
	var l raft.Log
	return map[string]func() error{
		"Space.Get":            func() error { _, _, err := s.Get([]byte("k")); return err },
		"Space.Scan":           func() error { return s.Scan(nil, nil, noop) },
		"Space.DeleteAll":      func() error { return s.DeleteAll(true) },
		"Space.DeleteRange":    func() error { return s.DeleteRange(nil, nil, true) },
		"Space.Ingest":         func() error { return s.Ingest([]string{"x.sst"}) },
		"Batch.Get":            func() error { _, _, err := b.Get(s, []byte("k")); return err },
		"Batch.Scan":           func() error { return b.Scan(s, nil, nil, noop) },
		"Snapshot.Get":         func() error { _, _, err := sn.Get(s, []byte("k")); return err },
		"Snapshot.Scan":        func() error { return sn.Scan(s, nil, nil, noop) },
		"LogStore.GetLog":      func() error { return ls.GetLog(1, &l) },
		"LogStore.StoreLogs":   func() error { return ls.StoreLogs([]*raft.Log{{Index: 1}}) },
		"LogStore.DeleteRange": func() error { return ls.DeleteRange(1, 2) },
		"LogStore.FirstIndex":  func() error { _, err := ls.FirstIndex(); return err },
		"LogStore.LastIndex":   func() error { _, err := ls.LastIndex(); return err },
		"Stable.Set":           func() error { return st.Set([]byte("k"), []byte("v")) },
	}
}

// kv is one scanned pair, copied out of RocksDB memory.
type kv struct{ k, v string }

func (p kv) String() string { return fmt.Sprintf("%s=%s", p.k, p.v) }

// collect returns a scan function that copies every pair into *out.
func collect(out *[]kv) func(k, v []byte) bool {
	return func(k, v []byte) bool {
		*out = append(*out, kv{string(bytes.Clone(k)), string(bytes.Clone(v))})
		return true
	}
}

// expectAll checks a whole space's pairs, printed as "[k=v ...]"; when
// names the moment checked.
func expectAll(t testing.TB, s *Space, want, when string) {
	t.Helper()
	var got []kv
	if err := s.Scan(nil, nil, collect(&got)); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != want {
		t.Fatalf("%s: got %v, want %s", when, got, want)
	}
}

func expectGet(t testing.TB, what string, v []byte, found bool, err error, want string, wantFound bool) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if found != wantFound || string(v) != want {
		t.Fatalf("%s: got (%q, %v), want (%q, %v)", what, v, found, want, wantFound)
	}
}
