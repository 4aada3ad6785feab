package rocks

import (
	"bytes"
	"fmt"
	"testing"
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
