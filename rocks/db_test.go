package rocks

import (
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"testing"
)

func TestListGroupsFreshDir(t *testing.T) {
	for _, dir := range []string{t.TempDir(), filepath.Join(t.TempDir(), "missing")} {
		got, err := ListGroups(dir)
		if err != nil || got != nil {
			t.Fatalf("ListGroups(%s): got (%v, %v), want (nil, nil)", dir, got, err)
		}
	}
}

func TestListGroupsExistingDB(t *testing.T) {
	dir := t.TempDir()
	db := openAt(t, dir, "offset-0", "metadata-0", "data-0")
	want := []string{"data-0", "metadata-0", "offset-0"}
	if got := db.Groups(); !slices.Equal(got, want) {
		t.Fatalf("Groups: got %v, want %v", got, want)
	}
	// ListGroups works while the DB is open (it reads the manifest only)
	// and after it is closed.
	for _, when := range []string{"open", "closed"} {
		got, err := ListGroups(dir)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("ListGroups (%s): got (%v, %v), want (%v, nil)", when, got, err, want)
		}
		_ = db.Close()
	}
}

func TestOpenKeepsStoredGroups(t *testing.T) {
	dir := t.TempDir()
	db := openAt(t, dir, "a", "b")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openAt(t, dir, "b", "c")
	want := []string{"a", "b", "c"}
	if got := db.Groups(); !slices.Equal(got, want) {
		t.Fatalf("Groups after reopen with fewer groups: got %v, want %v", got, want)
	}
	for _, g := range want {
		if _, err := db.Data(g); err != nil {
			t.Errorf("Data(%q): %v", g, err)
		}
	}
}

func TestOpenInvalidGroups(t *testing.T) {
	tests := []struct {
		name   string
		groups []string
	}{
		{"empty", []string{""}},
		{"slash", []string{"a/log"}},
		{"space", []string{"a b"}},
		{"duplicate", []string{"a", "a"}},
		{"too long", []string{string(make([]byte, 129))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db, err := Open(testOptions(t.TempDir()), tc.groups)
			if err == nil {
				_ = db.Close()
			}
			if !errors.Is(err, ErrInvalidGroup) {
				t.Fatalf("Open(%q): got %v, want ErrInvalidGroup", tc.groups, err)
			}
		})
	}
}

func TestUnknownGroup(t *testing.T) {
	db := openTest(t, "g")
	if _, err := db.Data("h"); !errors.Is(err, ErrUnknownGroup) {
		t.Errorf("Data: got %v, want ErrUnknownGroup", err)
	}
	if _, err := db.LogStore("h"); !errors.Is(err, ErrUnknownGroup) {
		t.Errorf("LogStore: got %v, want ErrUnknownGroup", err)
	}
	if _, err := db.StableStore("h"); !errors.Is(err, ErrUnknownGroup) {
		t.Errorf("StableStore: got %v, want ErrUnknownGroup", err)
	}
}

func TestLogStoreIsShared(t *testing.T) {
	db := openTest(t, "g")
	a, _ := db.LogStore("g")
	b, _ := db.LogStore("g")
	if a != b {
		t.Fatal("LogStore returned two stores for one group; their cached bounds would diverge")
	}
}

func TestCloseTwice(t *testing.T) {
	db := openTest(t, "g")
	for i := range 2 {
		if err := db.Close(); err != nil {
			t.Fatalf("Close #%d: got %v, want nil", i+1, err)
		}
	}
}

// TestUseAfterClose calls every entry point after Close: each must report
// ErrClosed (or a zero value where the signature has no error) and none may
// touch freed C memory.
func TestUseAfterClose(t *testing.T) {
	db := openTest(t, "g")
	data := mustData(t, db, "g")
	node := db.Node()
	ls, _ := db.LogStore("g")
	st, _ := db.StableStore("g")
	sn := db.NewSnapshot() // left open: Close must release it
	b := db.NewBatch()     // left open: still usable for Close
	b.Put(data, []byte("k"), []byte("v"))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	calls := storeCalls(data, b, sn, ls, st)
	maps.Copy(calls, map[string]func() error{
		"Space.Put":    func() error { return node.Put([]byte("k"), []byte("v"), true) },
		"Space.Delete": func() error { return node.Delete([]byte("k"), true) },
		"Batch.Commit": func() error { return b.Commit(true) },
		"new Batch.Commit": func() error {
			nb := db.NewBatch()
			defer nb.Close()
			nb.Put(data, []byte("k"), nil)
			return nb.Commit(true)
		},
		"new Snapshot.Get": func() error { s := db.NewSnapshot(); defer s.Close(); _, _, err := s.Get(data, nil); return err },
		"Stable.GetUint64": func() error { _, err := st.GetUint64([]byte("k")); return err },
		"DB.Data":          func() error { _, err := db.Data("g"); return err },
		"DB.LogStore":      func() error { _, err := db.LogStore("g"); return err },
		"DB.StableStore":   func() error { _, err := db.StableStore("g"); return err },
		"DB.Flush":         func() error { return db.Flush() },
		"DB.SyncWAL":       func() error { return db.SyncWAL() },
		"DB.AddGroup":      func() error { return db.AddGroup("h") },
		"DB.DropGroup":     func() error { return db.DropGroup("g") },
		"DB.NewSSTWriter":  func() error { _, err := db.NewSSTWriter(filepath.Join(t.TempDir(), "x.sst")); return err },
	})
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: got %v, want ErrClosed", name, err)
		}
	}
	if got := db.MemoryUsage(); got != (MemoryUsage{}) {
		t.Errorf("MemoryUsage after Close: got %+v, want zero", got)
	}
	if got := db.Property("rocksdb.stats"); got != "" {
		t.Errorf("Property after Close: got %q, want empty", got)
	}
	if got := data.Property("rocksdb.estimate-num-keys"); got != "" {
		t.Errorf("Space.Property after Close: got %q, want empty", got)
	}
	sn.Close()
	sn.Close()
	b.Close()
	b.Close()
	if err := b.Commit(false); !errors.Is(err, ErrClosed) {
		t.Errorf("Commit of a closed batch: got %v, want ErrClosed", err)
	}
}

func TestMemoryUsageAndProperty(t *testing.T) {
	db := openTest(t, "g")
	s := mustData(t, db, "g")
	for i := range 1000 {
		mustPut(t, s, string(rune('a'+i%26))+string(rune(i)), "value")
	}
	m := db.MemoryUsage()
	if m.BlockCacheCapacity != 8<<20 {
		t.Errorf("BlockCacheCapacity: got %d, want %d", m.BlockCacheCapacity, 8<<20)
	}
	if m.MemTables == 0 || m.Total() == 0 {
		t.Errorf("MemoryUsage after 1000 writes: got %+v, want non-zero memtables", m)
	}
	if got := db.Property("rocksdb.num-running-compactions"); got == "" {
		t.Errorf("Property(num-running-compactions): got empty, want a number")
	}
	if got := s.Property("rocksdb.estimate-num-keys"); got == "" || got == "0" {
		t.Errorf("Space.Property(estimate-num-keys): got %q, want > 0", got)
	}
	if err := db.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if got := s.Property("rocksdb.num-files-at-level0"); got != "1" {
		t.Errorf("L0 files after Flush: got %q, want 1", got)
	}
}
