package rocks

import (
	"errors"
	"math"
	"testing"

	"github.com/hashicorp/raft"
)

func mustStable(t testing.TB, db *DB, g string) *StableStore {
	t.Helper()
	return mustOpen(t, db.StableStore, g)
}

func TestStableStoreRoundTrip(t *testing.T) {
	dir := t.TempDir()
	db := openAt(t, dir, "g", "h")
	st := mustStable(t, db, "g")
	uints := map[string]uint64{"CurrentTerm": 7, "LastVoteTerm": math.MaxUint64, "zero": 0}
	for k, v := range uints {
		if err := st.SetUint64([]byte(k), v); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Set([]byte("LastVoteCand"), []byte("node-2")); err != nil {
		t.Fatal(err)
	}
	if err := st.Set([]byte("empty"), nil); err != nil {
		t.Fatal(err)
	}
	// Everything is synced; it must survive a reopen.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openAt(t, dir, "g", "h")
	st = mustStable(t, db, "g")
	for k, want := range uints {
		got, err := st.GetUint64([]byte(k))
		if err != nil || got != want {
			t.Errorf("GetUint64(%s): got (%d, %v), want (%d, nil)", k, got, err, want)
		}
	}
	got, err := st.Get([]byte("LastVoteCand"))
	if err != nil || string(got) != "node-2" {
		t.Errorf("Get(LastVoteCand): got (%q, %v), want (node-2, nil)", got, err)
	}
	got, err = st.Get([]byte("empty"))
	if err != nil || got == nil || len(got) != 0 {
		t.Errorf("Get(empty): got (%#v, %v), want ([]byte{}, nil)", got, err)
	}
	// Groups do not share stable state.
	if _, err := mustStable(t, db, "h").GetUint64([]byte("CurrentTerm")); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetUint64 in another group: got %v, want ErrNotFound", err)
	}
}

// TestStableStoreNotFound pins the contract raft depends on: a missing key
// is an error whose text is exactly "not found" (raft compares err.Error()),
// with a nil value or 0.
func TestStableStoreNotFound(t *testing.T) {
	db := openTest(t, "g")
	st := mustStable(t, db, "g")
	v, err := st.Get([]byte("missing"))
	if v != nil || err == nil || err.Error() != "not found" || !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(missing): got (%v, %v), want (nil, \"not found\")", v, err)
	}
	n, err := st.GetUint64([]byte("missing"))
	if n != 0 || err == nil || err.Error() != "not found" {
		t.Fatalf("GetUint64(missing): got (%d, %v), want (0, \"not found\")", n, err)
	}
	if err := st.Set([]byte("short"), []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetUint64([]byte("short")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("GetUint64 of a 2-byte value: got %v, want ErrCorrupt", err)
	}
}

// TestHasExistingState runs raft's own reading of the stores.
func TestHasExistingState(t *testing.T) {
	db := openTest(t, "g")
	ls, st := mustLogStore(t, db, "g"), mustStable(t, db, "g")
	snaps := raft.NewInmemSnapshotStore()
	has, err := raft.HasExistingState(ls, st, snaps)
	if err != nil || has {
		t.Fatalf("HasExistingState on fresh stores: got (%v, %v), want (false, nil)", has, err)
	}
	if err := st.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		t.Fatal(err)
	}
	has, err = raft.HasExistingState(ls, st, snaps)
	if err != nil || !has {
		t.Fatalf("HasExistingState with a term: got (%v, %v), want (true, nil)", has, err)
	}
}
