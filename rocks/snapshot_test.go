package rocks

import (
	"errors"
	"slices"
	"testing"
)

func TestSnapshotIsolation(t *testing.T) {
	db := openTest(t, "a", "b")
	a, b := mustData(t, db, "a"), mustData(t, db, "b")
	mustPut(t, a, "k1", "old")
	mustPut(t, a, "k2", "old")
	mustPut(t, b, "k", "old")

	sn := db.NewSnapshot()
	t.Cleanup(sn.Close)

	mustPut(t, a, "k1", "new")
	if err := a.Delete([]byte("k2"), false); err != nil {
		t.Fatal(err)
	}
	mustPut(t, a, "k3", "new")
	mustPut(t, b, "k", "new")
	if err := b.DeleteAll(true); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil { // the snapshot must survive flushes too
		t.Fatal(err)
	}

	v, found, err := sn.Get(a, []byte("k1"))
	expectGet(t, "Snapshot.Get(k1)", v, found, err, "old", true)
	v, found, err = sn.Get(a, []byte("k3"))
	expectGet(t, "Snapshot.Get(k3)", v, found, err, "", false)
	v, found, err = sn.Get(b, []byte("k"))
	expectGet(t, "Snapshot.Get(b, k)", v, found, err, "old", true)

	var got []kv
	if err := sn.Scan(a, nil, nil, collect(&got)); err != nil {
		t.Fatal(err)
	}
	if want := []kv{{"k1", "old"}, {"k2", "old"}}; !slices.Equal(got, want) {
		t.Fatalf("Snapshot.Scan: got %v, want %v", got, want)
	}
	got = nil
	if err := sn.Scan(a, []byte("k2"), []byte("k9"), collect(&got)); err != nil {
		t.Fatal(err)
	}
	if want := []kv{{"k2", "old"}}; !slices.Equal(got, want) {
		t.Fatalf("Snapshot.Scan(k2, k9): got %v, want %v", got, want)
	}
	// The live view moved on.
	v, found, err = a.Get([]byte("k1"))
	expectGet(t, "Space.Get(k1)", v, found, err, "new", true)

	sn.Close()
	if _, _, err := sn.Get(a, []byte("k1")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get on a closed snapshot: got %v, want ErrClosed", err)
	}
	sn.Close()
}

func TestSnapshotForeignSpace(t *testing.T) {
	db1, db2 := openTest(t, "g"), openTest(t, "g")
	sn := db1.NewSnapshot()
	t.Cleanup(sn.Close)
	if _, _, err := sn.Get(mustData(t, db2, "g"), []byte("k")); !errors.Is(err, ErrForeignSpace) {
		t.Fatalf("Snapshot.Get with a foreign space: got %v, want ErrForeignSpace", err)
	}
}
