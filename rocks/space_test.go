package rocks

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
)

func TestSpaceGetPutDelete(t *testing.T) {
	db := openTest(t, "g")
	s := mustData(t, db, "g")
	v, found, err := s.Get([]byte("k"))
	expectGet(t, "Get of a missing key", v, found, err, "", false)

	mustPut(t, s, "k", "v1")
	v, found, err = s.Get([]byte("k"))
	expectGet(t, "Get after Put", v, found, err, "v1", true)

	// The returned value is Go memory: it must survive later writes.
	mustPut(t, s, "k", "v2")
	if string(v) != "v1" {
		t.Fatalf("value from the first Get changed to %q after a Put, want v1", v)
	}

	if err := s.Put([]byte("empty"), nil, true); err != nil {
		t.Fatal(err)
	}
	v, found, err = s.Get([]byte("empty"))
	expectGet(t, "Get of an empty value", v, found, err, "", true)
	if v == nil {
		t.Fatal("Get of a stored empty value: got nil, want non-nil empty slice")
	}

	if err := s.Delete([]byte("k"), true); err != nil {
		t.Fatal(err)
	}
	v, found, err = s.Get([]byte("k"))
	expectGet(t, "Get after Delete", v, found, err, "", false)
}

func TestSpacesAreSeparate(t *testing.T) {
	db := openTest(t, "a", "b")
	a, b := mustData(t, db, "a"), mustData(t, db, "b")
	mustPut(t, a, "k", "in a")
	mustPut(t, db.Node(), "k", "in node")
	v, found, err := b.Get([]byte("k"))
	expectGet(t, "Get from b of a key written to a", v, found, err, "", false)
	v, found, err = db.Node().Get([]byte("k"))
	expectGet(t, "Get from node", v, found, err, "in node", true)
}

func TestSpaceScan(t *testing.T) {
	db := openTest(t, "g")
	s := mustData(t, db, "g")
	for _, k := range []string{"a", "b", "ba", "bb", "c", "d\xff", "e"} {
		mustPut(t, s, k, "v"+k)
	}
	tests := []struct {
		name       string
		start, end []byte
		limit      int // stop after this many (0: all)
		want       []string
	}{
		{"everything", nil, nil, 0, []string{"a", "b", "ba", "bb", "c", "d\xff", "e"}},
		{"empty start is the beginning", []byte{}, []byte("b"), 0, []string{"a"}},
		{"half open", []byte("b"), []byte("c"), 0, []string{"b", "ba", "bb"}},
		{"start between keys", []byte("az"), []byte("bb"), 0, []string{"b", "ba"}},
		{"to the end", []byte("c"), nil, 0, []string{"c", "d\xff", "e"}},
		{"empty range", []byte("c"), []byte("c"), 0, nil},
		{"inverted range", []byte("d"), []byte("c"), 0, nil},
		{"empty end", nil, []byte{}, 0, nil},
		{"past the end", []byte("f"), nil, 0, nil},
		{"stop early", nil, nil, 2, []string{"a", "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			err := s.Scan(tc.start, tc.end, func(k, v []byte) bool {
				if string(v) != "v"+string(k) {
					t.Errorf("value of %q: got %q, want %q", k, v, "v"+string(k))
				}
				got = append(got, string(k))
				return tc.limit == 0 || len(got) < tc.limit
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Scan(%q, %q): got %q, want %q", tc.start, tc.end, got, tc.want)
			}
		})
	}
}

// TestScanNested checks that a Scan callback may read the same DB (the gate
// admits nested calls).
func TestScanNested(t *testing.T) {
	db := openTest(t, "g")
	s := mustData(t, db, "g")
	mustPut(t, s, "a", "b")
	mustPut(t, s, "b", "c")
	var got []string
	err := s.Scan(nil, nil, func(k, v []byte) bool {
		w, _, err := s.Get(v)
		if err != nil {
			t.Fatalf("nested Get: %v", err)
		}
		got = append(got, string(w))
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"c", ""}; !slices.Equal(got, want) {
		t.Fatalf("nested reads: got %q, want %q", got, want)
	}
}

func TestDeleteAll(t *testing.T) {
	db := openTest(t, "a", "b")
	a, b := mustData(t, db, "a"), mustData(t, db, "b")
	for _, k := range []string{"", "x", "\xff\xff\xff\xff\xff\xff\xff\xff\xff", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00"} {
		if err := a.Put([]byte(k), []byte("v"), false); err != nil {
			t.Fatal(err)
		}
	}
	mustPut(t, b, "x", "kept")
	mustPut(t, db.Node(), "x", "kept")
	ls, _ := db.LogStore("a")
	if err := ls.StoreLog(testLog(1)); err != nil {
		t.Fatal(err)
	}
	// Some keys in SST files, some in the memtable.
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	mustPut(t, a, "y", "v")

	if err := a.DeleteAll(true); err != nil {
		t.Fatalf("DeleteAll: %v", err)
	}
	var left []kv
	if err := a.Scan(nil, nil, collect(&left)); err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("keys left after DeleteAll: got %v, want none", left)
	}
	for _, sp := range []*Space{b, db.Node()} {
		v, found, err := sp.Get([]byte("x"))
		expectGet(t, "Get from "+sp.Name()+" after DeleteAll of a", v, found, err, "kept", true)
	}
	if last, _ := ls.LastIndex(); last != 1 {
		t.Fatalf("LastIndex of a's log after DeleteAll of a's data: got %d, want 1", last)
	}
	// Empty already: a no-op. New writes after DeleteAll are visible.
	if err := a.DeleteAll(false); err != nil {
		t.Fatal(err)
	}
	mustPut(t, a, "x", "new")
	v, found, err := a.Get([]byte("x"))
	expectGet(t, "Get after DeleteAll and Put", v, found, err, "new", true)
}

// Deleted keys keep their space on disk until a compaction drops them;
// Compact does, so a group whose keys were deleted (a split parent's
// dropped range) frees its disk and reports its true size (RocksDB's
// live-data estimate skips older files that newer ones overlap: with the
// deletes flushed it counts little more than the tombstones). Compact on a
// closed database returns ErrClosed.
func TestCompactFreesDeletedKeys(t *testing.T) {
	db := openTest(t, "g")
	sp, err := db.Data("g")
	if err != nil {
		t.Fatal(err)
	}
	const keys = 2000
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range keys {
		// Random bytes: LZ4 would shrink repeated ones to nothing.
		v := make([]byte, 1024)
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
		if err := sp.Put(fmt.Appendf(nil, "key-%05d", i), v, false); err != nil {
			t.Fatal(err)
		}
	}
	prop := func(name string) uint64 {
		v, err := strconv.ParseUint(sp.Property(name), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	const files, live = "rocksdb.live-sst-files-size", "rocksdb.estimate-live-data-size"
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	full := prop(files)
	if full < keys*1024 {
		t.Fatalf("SST files after %d puts of 1 KiB: %d bytes, want more", keys, full)
	}
	for i := range keys {
		if i%4 != 0 {
			if err := sp.Delete(fmt.Appendf(nil, "key-%05d", i), false); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := prop(files); got < full {
		t.Fatalf("SST files after deletes, before compaction: %d bytes, want still at least %d", got, full)
	}
	if err := sp.Compact(); err != nil {
		t.Fatal(err)
	}
	kept := uint64(keys / 4 * 1024)
	if got := prop(files); got > full/2 || got < kept {
		t.Fatalf("SST files after Compact: %d bytes, want between %d (the quarter of the keys left) and half of %d", got, kept, full)
	}
	if got := prop(live); got < kept || got > full/2 {
		t.Fatalf("live-data estimate after Compact: %d bytes, want between %d and %d", got, kept, full/2)
	}
	n := 0
	if err := sp.Scan(nil, nil, func(_, _ []byte) bool { n++; return true }); err != nil || n != keys/4 {
		t.Fatalf("keys after Compact: %d (%v), want %d", n, err, keys/4)
	}
	db.Close()
	if err := sp.Compact(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Compact after Close: %v, want ErrClosed", err)
	}
}
