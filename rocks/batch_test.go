package rocks

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/linxGnu/grocksdb"
)

func TestBatchReadYourWrites(t *testing.T) {
	db := openTest(t, "g")
	s := mustData(t, db, "g")
	mustPut(t, s, "db-only", "d")
	mustPut(t, s, "overwritten", "old")
	mustPut(t, s, "deleted", "d")

	b := db.NewBatch()
	t.Cleanup(b.Close)
	b.Put(s, []byte("batch-only"), []byte("b"))
	b.Put(s, []byte("overwritten"), []byte("new"))
	b.Delete(s, []byte("deleted"))

	tests := []struct {
		key   string
		want  string
		found bool
	}{
		{"db-only", "d", true},
		{"batch-only", "b", true},
		{"overwritten", "new", true},
		{"deleted", "", false},
		{"nowhere", "", false},
	}
	for _, tc := range tests {
		v, found, err := b.Get(s, []byte(tc.key))
		expectGet(t, "Batch.Get("+tc.key+")", v, found, err, tc.want, tc.found)
	}
	// Nothing reached the database yet.
	v, found, err := s.Get([]byte("batch-only"))
	expectGet(t, "Space.Get before Commit", v, found, err, "", false)

	if got := b.Count(); got != 3 {
		t.Fatalf("Count: got %d, want 3", got)
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		v, found, err := s.Get([]byte(tc.key))
		expectGet(t, "Space.Get("+tc.key+") after Commit", v, found, err, tc.want, tc.found)
	}
}

func TestBatchSavePoint(t *testing.T) {
	db := openTest(t, "g")
	s := mustData(t, db, "g")
	b := db.NewBatch()
	t.Cleanup(b.Close)
	if err := b.RollbackToSavePoint(); err == nil {
		t.Fatal("RollbackToSavePoint without a save point: got nil, want an error")
	}
	b.Put(s, []byte("kept"), []byte("1"))
	b.SetSavePoint()
	b.Put(s, []byte("kept"), []byte("2"))
	b.Put(s, []byte("dropped"), []byte("x"))
	if got := b.Count(); got != 3 {
		t.Fatalf("Count before rollback: got %d, want 3", got)
	}
	if err := b.RollbackToSavePoint(); err != nil {
		t.Fatalf("RollbackToSavePoint: %v", err)
	}
	if got := b.Count(); got != 1 {
		t.Fatalf("Count after rollback: got %d, want 1", got)
	}
	v, found, err := b.Get(s, []byte("kept"))
	expectGet(t, "Batch.Get(kept) after rollback", v, found, err, "1", true)
	v, found, err = b.Get(s, []byte("dropped"))
	expectGet(t, "Batch.Get(dropped) after rollback", v, found, err, "", false)
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	var got []kv
	if err := s.Scan(nil, nil, collect(&got)); err != nil {
		t.Fatal(err)
	}
	if want := []kv{{"kept", "1"}}; !slices.Equal(got, want) {
		t.Fatalf("after Commit: got %v, want %v", got, want)
	}
}

// WrittenSinceSavePoint gives each selected key written since the latest
// save point once, in the order first written, with what the batch held
// at the save point: its own earlier write (a value or a delete), or the
// database's value, or nothing.
func TestBatchWrittenSinceSavePoint(t *testing.T) {
	db := openTest(t, "g", "h")
	s := mustData(t, db, "g")
	other := mustData(t, db, "h")
	mustPut(t, s, "stored", "db")
	mustPut(t, s, "gone", "db")
	b := db.NewBatch()
	t.Cleanup(b.Close)
	all := func(string) bool { return true }
	if ws, err := b.WrittenSinceSavePoint(s, all); ws != nil || err != nil {
		t.Fatalf("without a save point: %v %v, want none", ws, err)
	}
	b.Put(s, []byte("pending"), []byte("p1"))
	b.Delete(s, []byte("gone"))
	b.SetSavePoint()
	b.Put(s, []byte("stored"), []byte("2"))
	b.Put(s, []byte("pending"), []byte("p2"))
	b.Put(s, []byte("stored"), []byte("3"))
	b.Put(s, []byte("gone"), []byte("back"))
	b.Put(s, []byte("fresh"), []byte("f"))
	b.Put(s, []byte("skipped"), []byte("s"))
	b.Put(other, []byte("fresh"), []byte("other space"))
	b.SetSavePoint()
	b.Put(s, []byte("stored"), []byte("4"))
	inner, err := b.WrittenSinceSavePoint(s, all)
	if want := []Written{{Key: "stored", Before: []byte("3"), Existed: true}}; err != nil || !reflect.DeepEqual(inner, want) {
		t.Fatalf("since the inner save point: %v %v, want %v", inner, err, want)
	}
	if err := b.RollbackToSavePoint(); err != nil {
		t.Fatal(err)
	}
	ws, err := b.WrittenSinceSavePoint(s, func(k string) bool { return k != "skipped" })
	want := []Written{
		{Key: "stored", Before: []byte("db"), Existed: true},
		{Key: "pending", Before: []byte("p1"), Existed: true},
		{Key: "gone"},
		{Key: "fresh"},
	}
	if err != nil || !reflect.DeepEqual(ws, want) {
		t.Fatalf("since the outer save point: %v %v, want %v", ws, err, want)
	}
}

func TestBatchScanMerges(t *testing.T) {
	db := openTest(t, "g")
	s := mustData(t, db, "g")
	other := db.Node()
	for _, k := range []string{"a", "c", "e", "g", "z"} {
		mustPut(t, s, k, "db")
	}
	if err := db.Flush(); err != nil { // some of the base in SST files
		t.Fatal(err)
	}
	mustPut(t, s, "f", "db")

	b := db.NewBatch()
	t.Cleanup(b.Close)
	b.Put(s, []byte("b"), []byte("batch"))
	b.Put(s, []byte("c"), []byte("batch"))
	b.Delete(s, []byte("e"))
	b.Put(s, []byte("h"), []byte("batch"))    // beyond the end of the range below
	b.Put(other, []byte("d"), []byte("node")) // another space: must not appear

	tests := []struct {
		name       string
		start, end string
		want       []kv
	}{
		{"range", "a", "h", []kv{{"a", "db"}, {"b", "batch"}, {"c", "batch"}, {"f", "db"}, {"g", "db"}}},
		{"batch key is the start", "b", "d", []kv{{"b", "batch"}, {"c", "batch"}}},
		{"only a deleted key", "e", "f", nil},
		{"batch key past the end is cut", "g", "i", []kv{{"g", "db"}, {"h", "batch"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []kv
			if err := b.Scan(s, []byte(tc.start), []byte(tc.end), collect(&got)); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Batch.Scan(%q, %q): got %v, want %v", tc.start, tc.end, got, tc.want)
			}
		})
	}
	var all []kv
	if err := b.Scan(s, nil, nil, collect(&all)); err != nil {
		t.Fatal(err)
	}
	want := []kv{{"a", "db"}, {"b", "batch"}, {"c", "batch"}, {"f", "db"}, {"g", "db"}, {"h", "batch"}, {"z", "db"}}
	if !slices.Equal(all, want) {
		t.Fatalf("Batch.Scan(nil, nil): got %v, want %v", all, want)
	}
	// Stopping early.
	n := 0
	if err := b.Scan(s, nil, nil, func(k, v []byte) bool { n++; return n < 2 }); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("callbacks after returning false at the 2nd: got %d, want 2", n)
	}
}

func TestBatchForeignSpaceFailsCommit(t *testing.T) {
	db1 := openTest(t, "g")
	db2 := openTest(t, "g")
	s1, s2 := mustData(t, db1, "g"), mustData(t, db2, "g")
	b := db1.NewBatch()
	t.Cleanup(b.Close)
	b.Put(s1, []byte("a"), []byte("1"))
	b.Put(s2, []byte("b"), []byte("2"))
	if err := b.Commit(true); !errors.Is(err, ErrForeignSpace) {
		t.Fatalf("Commit with a foreign space: got %v, want ErrForeignSpace", err)
	}
	v, found, err := s1.Get([]byte("a"))
	expectGet(t, "Get after a refused Commit", v, found, err, "", false)
	if _, _, err := b.Get(s2, []byte("b")); !errors.Is(err, ErrForeignSpace) {
		t.Fatalf("Batch.Get with a foreign space: got %v, want ErrForeignSpace", err)
	}
	b.Reset()
	b.Put(s1, []byte("a"), []byte("1"))
	if err := b.Commit(true); err != nil {
		t.Fatalf("Commit after Reset: %v", err)
	}
}

// TestBatchPendingAfterRollback checks reads through the batch across
// nested save points, a value buffer the caller reuses after Put, and a
// scan stopped among pending keys past the database's last key.
func TestBatchPendingAfterRollback(t *testing.T) {
	db := openTest(t, "g")
	s := mustData(t, db, "g")
	mustPut(t, s, "a", "db")
	b := db.NewBatch()
	t.Cleanup(b.Close)
	buf := []byte("v1")
	b.Put(s, []byte("k"), buf)
	buf[1] = 'X' // the batch holds its own copy
	scan := func(what string, want []kv) {
		t.Helper()
		var got []kv
		if err := b.Scan(s, nil, nil, collect(&got)); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s: Batch.Scan: got %v, want %v", what, got, want)
		}
	}
	scan("after Put", []kv{{"a", "db"}, {"k", "v1"}})

	b.SetSavePoint()
	b.Delete(s, []byte("a"))
	b.Put(s, []byte("k"), []byte("v2"))
	b.SetSavePoint()
	b.Put(s, []byte("n"), []byte("new"))
	b.Delete(s, []byte("k"))
	scan("inside both save points", []kv{{"n", "new"}})
	if err := b.RollbackToSavePoint(); err != nil {
		t.Fatal(err)
	}
	scan("after the inner rollback", []kv{{"k", "v2"}})
	v, found, err := b.Get(s, []byte("n"))
	expectGet(t, "Batch.Get(n) after the inner rollback", v, found, err, "", false)
	if err := b.RollbackToSavePoint(); err != nil {
		t.Fatal(err)
	}
	scan("after the outer rollback", []kv{{"a", "db"}, {"k", "v1"}})
	v, found, err = b.Get(s, []byte("k"))
	expectGet(t, "Batch.Get(k) after the outer rollback", v, found, err, "v1", true)

	b.Put(s, []byte("x"), []byte("1"))
	b.Put(s, []byte("y"), []byte("2"))
	n := 0
	if err := b.Scan(s, nil, nil, func(k, v []byte) bool { n++; return n < 3 }); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("callbacks after returning false at the 3rd: got %d, want 3", n)
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	var got []kv
	if err := s.Scan(nil, nil, collect(&got)); err != nil {
		t.Fatal(err)
	}
	if want := []kv{{"a", "db"}, {"k", "v1"}, {"x", "1"}, {"y", "2"}}; !slices.Equal(got, want) {
		t.Fatalf("after Commit: got %v, want %v", got, want)
	}
}

// TestBatchEncodingMatchesRocksDB checks that the records a Batch encodes
// are byte for byte the ones RocksDB's own WriteBatch builds: a put and a
// delete in a column family and in the default one, an empty value, and
// a key long enough for a two-byte length.
func TestBatchEncodingMatchesRocksDB(t *testing.T) {
	db := openTest(t, "g")
	s := mustData(t, db, "g")
	if s.cfID == 0 {
		t.Fatal("the group's data space has column family id 0; the test needs another")
	}
	long := bytes.Repeat([]byte("k"), 300)
	want := grocksdb.NewWriteBatch()
	defer want.Destroy()
	rep := make([]byte, batchHeaderBytes)
	for _, w := range []struct {
		cf         bool
		put        bool
		key, value []byte
	}{
		{true, true, []byte("a"), []byte("value")},
		{true, false, []byte("b"), nil},
		{true, true, long, nil},
		{false, true, []byte("c"), long},
		{false, false, long, nil},
	} {
		id := uint32(0)
		switch {
		case w.cf && w.put:
			want.PutCF(s.cf, w.key, w.value)
			id = s.cfID
		case w.cf:
			want.DeleteCF(s.cf, w.key)
			id = s.cfID
		case w.put:
			want.Put(w.key, w.value)
		default:
			want.Delete(w.key)
		}
		rep, _ = encodeRecord(rep, id, w.put, w.key, w.value)
	}
	binary.LittleEndian.PutUint32(rep[8:], uint32(want.Count()))
	if got := want.Data(); !bytes.Equal(rep, got) {
		t.Fatalf("encoded batch:\n got %x\nwant %x", rep, got)
	}
}
