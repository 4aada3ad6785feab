package rocks

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func writeSST(t *testing.T, db *DB, path string, fill func(w *SSTWriter) error) int64 {
	t.Helper()
	w, err := db.NewSSTWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := fill(w); err != nil {
		t.Fatal(err)
	}
	size, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(path); err != nil || info.Size() != size {
		t.Fatalf("SST file %s: stat (%v, %v), Finish reported %d bytes", path, info, err, size)
	}
	return size
}

// Ingested files replace what the space held (range tombstones, keys and
// deletions included), atomically, other spaces untouched; the source files
// are moved; the result survives a reopen.
func TestIngestOverridesExistingState(t *testing.T) {
	dir := t.TempDir()
	db := openAt(t, filepath.Join(dir, "db"), "a", "b")
	a, b := mustData(t, db, "a"), mustData(t, db, "b")
	for _, k := range []string{"a1", "a2", "k1", "k5", "z"} {
		mustPut(t, a, k, "old")
	}
	mustPut(t, b, "k1", "other")
	if err := db.Flush(); err != nil { // old state in SST files and in the memtable
		t.Fatal(err)
	}
	mustPut(t, a, "k2", "old-memtable")
	// Clear everything from "k" on, as a restore clears its space.
	if err := a.DeleteRange([]byte("k"), nil, true); err != nil {
		t.Fatal(err)
	}

	f1 := filepath.Join(dir, "1.sst")
	f2 := filepath.Join(dir, "2.sst")
	writeSST(t, db, f1, func(w *SSTWriter) error {
		if err := w.Delete([]byte("a1")); err != nil {
			return err
		}
		return w.Put([]byte("a2"), []byte("new"))
	})
	writeSST(t, db, f2, func(w *SSTWriter) error {
		for _, k := range []string{"k1", "k3", "k5"} {
			if err := w.Put([]byte(k), []byte("new")); err != nil {
				return err
			}
		}
		return nil
	})
	if err := a.Ingest([]string{f1, f2}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{f1, f2} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("source file %s after a moving ingest: stat %v, want not exist", f, err)
		}
	}
	want := "[a2=new k1=new k3=new k5=new]"
	check := func(when string) {
		t.Helper()
		expectAll(t, mustData(t, db, "a"), want, when)
		v, ok, err := mustData(t, db, "b").Get([]byte("k1"))
		expectGet(t, when+": other space", v, ok, err, "other", true)
	}
	check("after ingest")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openAt(t, filepath.Join(dir, "db"))
	check("after reopen")
}

func TestSSTWriterRefusesMisorderedKeys(t *testing.T) {
	db := openTest(t)
	w, err := db.NewSSTWriter(filepath.Join(t.TempDir(), "x.sst"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Put([]byte("b"), nil); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b"} {
		if err := w.Put([]byte(k), nil); err == nil {
			t.Errorf("Put(%q) after \"b\": got nil, want an error", k)
		}
	}
	if w.Count() != 1 {
		t.Fatalf("Count: got %d, want 1", w.Count())
	}
	if _, err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := w.Put([]byte("c"), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Finish: got %v, want ErrClosed", err)
	}
	w.Close()
	w.Close()
}

// A batch holding a missing or garbage file ingests nothing, not even its
// good files.
func TestIngestIsAllOrNothing(t *testing.T) {
	db := openTest(t, "a")
	a := mustData(t, db, "a")
	mustPut(t, a, "keep", "v")
	dir := t.TempDir()
	good, garbage := filepath.Join(dir, "good.sst"), filepath.Join(dir, "garbage.sst")
	writeSST(t, db, good, func(w *SSTWriter) error { return w.Put([]byte("k"), []byte("v")) })
	if err := os.WriteFile(garbage, []byte("not an SST file"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, batch := range [][]string{{good, filepath.Join(dir, "missing.sst")}, {good, garbage}} {
		if err := a.Ingest(batch); err == nil {
			t.Errorf("ingest of %v: got nil, want an error", batch)
		}
	}
	expectAll(t, a, "[keep=v]", "after failed ingests")
}

func TestDeleteRange(t *testing.T) {
	db := openTest(t, "a")
	a := mustData(t, db, "a")
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		mustPut(t, a, k, "v")
	}
	if err := a.DeleteRange([]byte("b"), []byte("d"), true); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteRange([]byte("x"), nil, true); err != nil { // past the last key: nothing
		t.Fatal(err)
	}
	if err := a.DeleteRange([]byte("d"), []byte("b"), true); err != nil { // empty range
		t.Fatal(err)
	}
	expectAll(t, a, "[a=v d=v e=v]", "after DeleteRange [b, d)")
	if err := a.DeleteRange([]byte("d"), nil, true); err != nil {
		t.Fatal(err)
	}
	expectAll(t, a, "[a=v]", "after DeleteRange [d, end)")
}

func TestSyncWAL(t *testing.T) {
	dir := t.TempDir()
	db := openAt(t, dir, "a")
	mustPut(t, mustData(t, db, "a"), "k", "unsynced")
	if err := db.SyncWAL(); err != nil {
		t.Fatalf("SyncWAL: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openAt(t, dir)
	v, ok, err := mustData(t, db, "a").Get([]byte("k"))
	expectGet(t, "Get after SyncWAL and reopen", v, ok, err, "unsynced", true)
}
