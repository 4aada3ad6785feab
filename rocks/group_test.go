package rocks

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/raft"
)

func TestAddGroup(t *testing.T) {
	dir := t.TempDir()
	db := openAt(t, dir, "a")
	for range 2 { // idempotent
		if err := db.AddGroup("b"); err != nil {
			t.Fatalf("AddGroup(b): %v", err)
		}
	}
	if got, want := db.Groups(), []string{"a", "b"}; !slices.Equal(got, want) {
		t.Fatalf("Groups: got %v, want %v", got, want)
	}
	s := mustData(t, db, "b")
	mustPut(t, s, "k", "v")
	ls := mustLogStore(t, db, "b")
	if err := ls.StoreLogs([]*raft.Log{{Index: 1, Term: 1, Data: []byte("x")}, {Index: 2, Term: 1}}); err != nil {
		t.Fatal(err)
	}
	st, err := db.StableStore("b")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetUint64([]byte("term"), 7); err != nil {
		t.Fatal(err)
	}
	// Adding an existing group keeps its data.
	if err := db.AddGroup("a"); err != nil {
		t.Fatal(err)
	}
	if err := db.AddGroup("b"); err != nil {
		t.Fatal(err)
	}
	v, ok, err := s.Get([]byte("k"))
	expectGet(t, "Get after a second AddGroup", v, ok, err, "v", true)

	// The group survives a reopen that does not name it.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := ListGroups(dir); err != nil || !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("ListGroups after close: got (%v, %v), want [a b]", got, err)
	}
	db = openAt(t, dir, "a")
	v, ok, err = mustData(t, db, "b").Get([]byte("k"))
	expectGet(t, "Get after reopen", v, ok, err, "v", true)
	ls = mustLogStore(t, db, "b")
	if first, _ := ls.FirstIndex(); first != 1 {
		t.Fatalf("FirstIndex after reopen: got %d, want 1", first)
	}
	if last, _ := ls.LastIndex(); last != 2 {
		t.Fatalf("LastIndex after reopen: got %d, want 2", last)
	}
	st, _ = db.StableStore("b")
	if term, err := st.GetUint64([]byte("term")); err != nil || term != 7 {
		t.Fatalf("stable term after reopen: got (%d, %v), want 7", term, err)
	}
}

func TestAddGroupInvalidName(t *testing.T) {
	db := openTest(t)
	for _, name := range []string{"", "a/log", "a b", strings.Repeat("x", 129)} {
		if err := db.AddGroup(name); !errors.Is(err, ErrInvalidGroup) {
			t.Errorf("AddGroup(%q): got %v, want ErrInvalidGroup", name, err)
		}
	}
	if got := db.Groups(); len(got) != 0 {
		t.Fatalf("Groups after invalid adds: got %v, want none", got)
	}
}

func TestDropGroup(t *testing.T) {
	dir := t.TempDir()
	db := openAt(t, dir, "keep", "gone")
	keep, gone := mustData(t, db, "keep"), mustData(t, db, "gone")
	mustPut(t, keep, "k", "kept")
	mustPut(t, gone, "k", "dropped")
	ls := mustLogStore(t, db, "gone")
	if err := ls.StoreLog(&raft.Log{Index: 1, Term: 1}); err != nil {
		t.Fatal(err)
	}
	st, _ := db.StableStore("gone")
	sn := db.NewSnapshot() // taken before the drop, released after it
	defer sn.Close()
	b := db.NewBatch() // holds a write to the dropped group
	defer b.Close()
	b.Put(keep, []byte("batch"), []byte("v"))

	for range 2 { // idempotent
		if err := db.DropGroup("gone"); err != nil {
			t.Fatalf("DropGroup: %v", err)
		}
	}
	if err := db.DropGroup("never-was"); err != nil {
		t.Fatalf("DropGroup of an unknown group: %v", err)
	}
	if got, want := db.Groups(), []string{"keep"}; !slices.Equal(got, want) {
		t.Fatalf("Groups: got %v, want %v", got, want)
	}
	for name, call := range map[string]func() error{
		"Data":        func() error { _, err := db.Data("gone"); return err },
		"LogStore":    func() error { _, err := db.LogStore("gone"); return err },
		"StableStore": func() error { _, err := db.StableStore("gone"); return err },
	} {
		if err := call(); !errors.Is(err, ErrUnknownGroup) {
			t.Errorf("DB.%s of a dropped group: got %v, want ErrUnknownGroup", name, err)
		}
	}

	// Stores obtained before the drop answer with ErrGroupDropped.
	calls := storeCalls(gone, b, sn, ls, st)
	calls["Space.Put"] = func() error { return gone.Put([]byte("k"), nil, true) }
	calls["Space.Delete"] = func() error { return gone.Delete([]byte("k"), true) }
	calls["Stable.Get"] = func() error { _, err := st.Get([]byte("k")); return err }
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrGroupDropped) {
			t.Errorf("%s on a dropped group: got %v, want ErrGroupDropped", name, err)
		}
	}
	if got := gone.Property("rocksdb.estimate-num-keys"); got != "" {
		t.Errorf("Space.Property of a dropped group: got %q, want empty", got)
	}
	// The batch's write to the dropped group is refused, so the batch
	// commits nothing.
	b.Put(gone, []byte("k"), []byte("v"))
	if err := b.Commit(true); !errors.Is(err, ErrGroupDropped) {
		t.Errorf("Commit of a batch with a write to a dropped group: got %v, want ErrGroupDropped", err)
	}

	// The other group is untouched, also through the old snapshot.
	v, ok, err := keep.Get([]byte("k"))
	expectGet(t, "Get of the kept group", v, ok, err, "kept", true)
	v, ok, err = sn.Get(keep, []byte("k"))
	expectGet(t, "Snapshot.Get of the kept group", v, ok, err, "kept", true)
	if err := db.Flush(); err != nil {
		t.Fatalf("Flush after a drop: %v", err)
	}

	// Gone after a reopen; the name can be added again, empty.
	sn.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := ListGroups(dir); err != nil || !slices.Equal(got, []string{"keep"}) {
		t.Fatalf("ListGroups after the drop: got (%v, %v), want [keep]", got, err)
	}
	db = openAt(t, dir)
	if err := db.AddGroup("gone"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := mustData(t, db, "gone").Get([]byte("k")); ok {
		t.Fatal("a re-added group holds the dropped group's data")
	}
	if last, _ := mustLogStore(t, db, "gone").LastIndex(); last != 0 {
		t.Fatalf("LastIndex of a re-added group: got %d, want 0", last)
	}
}

// Dropping and re-adding the same name at run time, repeatedly: every
// incarnation starts empty and works; reopen sees the last one.
func TestDropThenAddSameName(t *testing.T) {
	dir := t.TempDir()
	db := openAt(t, dir, "a")
	for i := range 5 {
		s := mustData(t, db, "a")
		if _, ok, _ := s.Get([]byte("k")); ok {
			t.Fatalf("incarnation %d: holds an earlier incarnation's key", i)
		}
		mustPut(t, s, "k", fmt.Sprint(i))
		if err := db.DropGroup("a"); err != nil {
			t.Fatal(err)
		}
		if err := db.AddGroup("a"); err != nil {
			t.Fatal(err)
		}
	}
	mustPut(t, mustData(t, db, "a"), "last", "v")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openAt(t, dir)
	expectAll(t, mustData(t, db, "a"), "[last=v]", "after reopen")
}

// TestAddDropDuringUse adds and drops groups while other goroutines use
// them and a stable group: every call succeeds or reports the group
// unknown or dropped, none touches freed memory (the test would crash),
// and the stable group loses nothing.
func TestAddDropDuringUse(t *testing.T) {
	db := openTest(t, "stable")
	const churn = 4
	names := make([]string, churn)
	for i := range names {
		names[i] = fmt.Sprintf("churn-%d", i)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	report := func(err error) {
		if err != nil && !errors.Is(err, ErrGroupDropped) && !errors.Is(err, ErrUnknownGroup) {
			select {
			case errs <- err:
			default:
			}
		}
	}
	var calls atomic.Int64
	worker := func(name string, w int) {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			calls.Add(1)
			s, err := db.Data(name)
			if err != nil {
				report(err)
				continue
			}
			k := []byte(fmt.Sprintf("w%d-%d", w, i))
			switch i % 5 {
			case 0:
				report(s.Put(k, k, false))
			case 1:
				_, _, err := s.Get(k)
				report(err)
			case 2:
				report(s.Scan(nil, nil, func(k, v []byte) bool { return true }))
			case 3:
				b := db.NewBatch()
				b.Put(s, k, k)
				report(b.Commit(false))
				b.Close()
			case 4:
				sn := db.NewSnapshot()
				_, _, err := sn.Get(s, k)
				report(err)
				sn.Close()
				ls, err := db.LogStore(name)
				if err != nil {
					report(err)
					continue
				}
				report(ls.StoreLog(&raft.Log{Index: uint64(i + 1), Term: 1}))
				_, err = ls.LastIndex()
				report(err)
			}
		}
	}
	for w, name := range append(slices.Clone(names), "stable") {
		wg.Add(1)
		go worker(name, w)
	}
	// Lookups of the group list race with the changes too.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, g := range db.Groups() {
				_, err := db.StableStore(g)
				report(err)
			}
		}
	}()

	for round := range 30 {
		name := names[round%churn]
		if err := db.AddGroup(name); err != nil {
			t.Fatalf("round %d: AddGroup(%s): %v", round, name, err)
		}
		mustPut(t, mustData(t, db, name), "round", fmt.Sprint(round))
		if err := db.DropGroup(names[(round+1)%churn]); err != nil {
			t.Fatalf("round %d: DropGroup: %v", round, err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("call during add/drop: got %v, want nil, ErrGroupDropped or ErrUnknownGroup", err)
	}
	if calls.Load() == 0 {
		t.Fatal("the workers made no calls")
	}
	// The stable group kept every write its worker made (w index churn).
	s := mustData(t, db, "stable")
	n := 0
	if err := s.Scan(nil, nil, func(k, v []byte) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("the stable group holds nothing after the churn")
	}
}

// Closing the DB with groups added and dropped at run time destroys every
// handle once (Debian's RocksDB aborts on a handle left open).
func TestCloseAfterAddAndDrop(t *testing.T) {
	dir := t.TempDir()
	db := openAt(t, dir, "a")
	for _, g := range []string{"b", "c", "d"} {
		if err := db.AddGroup(g); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.DropGroup("c"); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.AddGroup("e"); !errors.Is(err, ErrClosed) {
		t.Fatalf("AddGroup after Close: got %v, want ErrClosed", err)
	}
	if err := db.DropGroup("a"); !errors.Is(err, ErrClosed) {
		t.Fatalf("DropGroup after Close: got %v, want ErrClosed", err)
	}
	db = openAt(t, dir)
	if got, want := db.Groups(), []string{"a", "b", "d"}; !slices.Equal(got, want) {
		t.Fatalf("Groups after reopen: got %v, want %v", got, want)
	}
}

// Dropping a group with data gives its disk space back: its SST files are
// deleted (the other group's stay).
func TestDropGroupFreesSpace(t *testing.T) {
	dir := t.TempDir()
	db := openAt(t, dir, "big", "small")
	big, small := mustData(t, db, "big"), mustData(t, db, "small")
	val := []byte(strings.Repeat("x", 1000)) // LZ4 shrinks it; sizes below are on-disk
	for i := range 20000 {
		if err := big.Put([]byte(fmt.Sprintf("k%06d", i)), append(val, byte(i)), false); err != nil {
			t.Fatal(err)
		}
	}
	mustPut(t, small, "k", "v")
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	bigBytes := sstBytes(t, big)
	if bigBytes == 0 {
		t.Fatal("the big group has no SST files after Flush")
	}
	smallBytes := sstBytes(t, small)
	before := dirSSTBytes(t, dir)
	if before < bigBytes {
		t.Fatalf("SST files in %s: %d bytes, less than the big group's %d", dir, before, bigBytes)
	}
	if err := db.DropGroup("big"); err != nil {
		t.Fatal(err)
	}
	if after := dirSSTBytes(t, dir); after > before-bigBytes {
		t.Fatalf("SST bytes in the directory after dropping a group of %d: got %d, want at most %d", bigBytes, after, before-bigBytes)
	}
	if got := sstBytes(t, small); got != smallBytes {
		t.Fatalf("the other group's SST bytes: got %d, want %d", got, smallBytes)
	}
}

// sstBytes is RocksDB's count of a space's live SST bytes.
func sstBytes(t *testing.T, s *Space) int64 {
	t.Helper()
	var n int64
	if _, err := fmt.Sscan(s.Property("rocksdb.total-sst-files-size"), &n); err != nil {
		t.Fatalf("total-sst-files-size of %s: %v", s.Name(), err)
	}
	return n
}

// dirSSTBytes sums the sizes of the SST files in dir.
func dirSSTBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".sst") {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n += info.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
