package sm

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/metamq/meta/sm/logpb"
)

func ownOp(legacy bool, ranges ...*logpb.HashRange) *logpb.Op {
	return &logpb.Op{Op: &logpb.Op_OwnershipInit{OwnershipInit: &logpb.OwnershipInit{Legacy: legacy, Ranges: ranges}}}
}

// keysBySide returns n keys whose route hash is below half and n above.
func keysBySide(n int) (low, high []string) {
	for i := 0; len(low) < n || len(high) < n; i++ {
		k := string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676))
		if RouteHash([]byte(k)) < 1<<31 {
			if len(low) < n {
				low = append(low, k)
			}
		} else if len(high) < n {
			high = append(high, k)
		}
	}
	return low, high
}

// A data group without an ownership record (what an earlier release
// wrote) applies every write sent to it, as it did then: its log,
// replayed after an upgrade, must apply exactly as before.
func TestNoOwnershipRecordServesEverything(t *testing.T) {
	e := bareEnv(t, "data-0")
	low, high := keysBySide(3)
	idx := uint64(0)
	for _, k := range append(low, high...) {
		idx++
		if r := results(t, e.m.Apply(entry(t, idx, putOp(k, "v"))))[0]; r.Code != logpb.Code_CODE_OK {
			t.Fatalf("put %s without a record: %v", k, r)
		}
	}
	for _, k := range append(low, high...) {
		if kv, err := e.m.Get([]byte(k)); err != nil || kv == nil {
			t.Fatalf("get %s: %v %v", k, kv, err)
		}
	}
}

// With a record, the group's own log decides: an op on a key outside the
// owned ranges is refused when applied (WRONG_GROUP, nothing written), a
// read of it is refused in the data's view, listings skip it; the first
// record wins; the record survives a restart and a snapshot.
func TestOwnershipDecidedByTheLog(t *testing.T) {
	e := bareEnv(t, "data-0")
	low, high := keysBySide(3)
	// Written before the record: everything is served.
	results(t, e.m.Apply(entry(t, 1, putOp(high[0], "before"))))
	// A bad range is refused, and records nothing.
	if r := results(t, e.m.Apply(entry(t, 2, ownOp(false, &logpb.HashRange{Lo: 5, Hi: 5}))))[0]; r.Code != logpb.Code_CODE_INVALID {
		t.Fatalf("empty range: %v", r)
	}
	if e.m.Ownership() != nil {
		t.Fatal("a refused record was kept")
	}
	results(t, e.m.Apply(entry(t, 3, ownOp(false, &logpb.HashRange{Lo: 0, Hi: 1 << 31}))))
	// The first record wins.
	results(t, e.m.Apply(entry(t, 4, ownOp(true))))
	check := func(stage string, m *Machine) {
		t.Helper()
		if own := m.Ownership(); own == nil || own.Legacy || len(own.Owned) != 1 || own.Owned[0].Hi != 1<<31 {
			t.Fatalf("%s: ownership %v", stage, own)
		}
		for _, k := range low {
			if _, err := m.Get([]byte(k)); err != nil {
				t.Fatalf("%s: get owned %s: %v", stage, k, err)
			}
		}
		var oe *OwnershipError
		if _, err := m.Get([]byte(high[0])); !errors.As(err, &oe) || oe.Moving {
			t.Fatalf("%s: get %s outside the owned range: %v, want a wrong-group ownership error", stage, high[0], err)
		}
		kvs, _, err := m.List(nil, nil, 100, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range kvs {
			if RouteHash(kv.Key) >= 1<<31 {
				t.Fatalf("%s: listing shows %s, outside the owned range", stage, kv.Key)
			}
		}
	}
	idx := uint64(4)
	for _, k := range low {
		idx++
		if r := results(t, e.m.Apply(entry(t, idx, putOp(k, "v"))))[0]; r.Code != logpb.Code_CODE_OK {
			t.Fatalf("put owned %s: %v", k, r)
		}
	}
	for _, k := range high[1:] {
		idx++
		if r := results(t, e.m.Apply(entry(t, idx, putOp(k, "v"))))[0]; r.Code != logpb.Code_CODE_WRONG_GROUP {
			t.Fatalf("put %s outside the owned range: %v, want WRONG_GROUP", k, r)
		}
	}
	// An op touching both sides is refused whole: nothing of it is written.
	idx++
	both := &logpb.Op{Op: &logpb.Op_SessionsPut{SessionsPut: &logpb.SessionsPut{Sessions: []*logpb.SessionPut{
		{ClientId: low[1], BrokerId: "b1"}, {ClientId: high[1], BrokerId: "b1"}}}}}
	if r := results(t, e.m.Apply(entry(t, idx, both)))[0]; r.Code != logpb.Code_CODE_WRONG_GROUP {
		t.Fatalf("sessions on both sides: %v, want WRONG_GROUP", r)
	}
	if s, err := e.m.Session(low[1]); err != nil || s != nil {
		t.Fatalf("the owned part of a refused op was written: %v %v", s, err)
	}
	check("applied", e.m)
	e.reopen()
	check("after a restart", e.m)
	data := snapshotBytes(t, e.m)
	other := bareEnv(t, "data-0")
	if err := other.m.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	check("restored from a snapshot", other.m)
}

// Every op reports the version of the owned range holding its routing
// keys, as the group's own log had it when the op was checked (what the
// ownership checker judges), and a read reports it in the data's view;
// an op over ranges of two versions reports 0 (unknown), as do groups
// that record no ranges.
func TestResultsCarryTheRangeVersion(t *testing.T) {
	e := bareEnv(t, "data-0")
	low, high := keysBySide(1)
	apply := e.applyNext()
	if r := apply(putOp(low[0], "0"))[0]; r.Code != logpb.Code_CODE_OK || r.RangeVersion != 0 {
		t.Fatalf("before any ownership: got %v version %d, want OK version 0", r.Code, r.RangeVersion)
	}
	apply(ownOp(false, &logpb.HashRange{Lo: 0, Hi: 1 << 31, Version: 3}, &logpb.HashRange{Lo: 1 << 31, Hi: 1 << 32, Version: 5}))
	rs := apply(putOp(low[0], "1"), putOp(high[0], "2"), kvPutsOp(false, kvPut(low[0], "3", 0), kvPut(high[0], "4", 0)))
	for i, want := range []uint64{3, 5, 0} {
		if rs[i].Code != logpb.Code_CODE_OK || rs[i].RangeVersion != want {
			t.Fatalf("op %d: got %v version %d, want OK version %d", i, rs[i].Code, rs[i].RangeVersion, want)
		}
	}
	kv, ver, err := e.m.GetVersioned([]byte(high[0]))
	if err != nil || kv == nil || string(kv.Value) != "4" || ver != 5 {
		t.Fatalf("GetVersioned(%s): got %v version %d err %v, want value 4 at version 5", high[0], kv, ver, err)
	}
}
