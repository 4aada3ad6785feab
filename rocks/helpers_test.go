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

func mustData(t testing.TB, db *DB, group string) *Space {
	t.Helper()
	s, err := db.Data(group)
	if err != nil {
		t.Fatalf("Data(%q): %v", group, err)
	}
	return s
}

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

func expectGet(t testing.TB, what string, v []byte, found bool, err error, want string, wantFound bool) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if found != wantFound || string(v) != want {
		t.Fatalf("%s: got (%q, %v), want (%q, %v)", what, v, found, want, wantFound)
	}
}
