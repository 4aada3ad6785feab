package sm

import (
	"maps"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/sm/logpb"
)

func kvPutsOp(prev bool, puts ...*logpb.KVPut) *logpb.Op {
	return &logpb.Op{Op: &logpb.Op_KvPuts{KvPuts: &logpb.KVPuts{Puts: puts, ReturnPrevious: prev}}}
}

func kvPut(k, v string, lease int64) *logpb.KVPut {
	return &logpb.KVPut{Key: []byte(k), Value: []byte(v), Lease: lease}
}

func txnOp(compares []*logpb.KVCompare, success, failure []*logpb.KVTxnOp) *logpb.Op {
	return &logpb.Op{Op: &logpb.Op_KvTxn{KvTxn: &logpb.KVTxn{Compares: compares, Success: success, Failure: failure}}}
}

func tPut(k, v string, lease int64) *logpb.KVTxnOp {
	return &logpb.KVTxnOp{Op: &logpb.KVTxnOp_Put{Put: kvPut(k, v, lease)}}
}

func tDel(k string) *logpb.KVTxnOp {
	return &logpb.KVTxnOp{Op: &logpb.KVTxnOp_Delete{Delete: &logpb.KVDelete{Key: []byte(k)}}}
}

func cmpValue(k, v string) *logpb.KVCompare {
	return &logpb.KVCompare{Key: []byte(k), Target: &logpb.KVCompare_Value{Value: []byte(v)}}
}

func cmpVersion(k string, v uint64) *logpb.KVCompare {
	return &logpb.KVCompare{Key: []byte(k), Target: &logpb.KVCompare_Version{Version: v}}
}

func cmpMod(k string, r uint64) *logpb.KVCompare {
	return &logpb.KVCompare{Key: []byte(k), Target: &logpb.KVCompare_ModRevision{ModRevision: r}}
}

func cmpAbsent(k string, absent bool) *logpb.KVCompare {
	return &logpb.KVCompare{Key: []byte(k), Target: &logpb.KVCompare_Absent{Absent: absent}}
}

func leaseOp(id int64) *logpb.Op {
	return &logpb.Op{Op: &logpb.Op_LeaseGrant{LeaseGrant: &logpb.LeaseGrant{Id: id, TtlSeconds: 60}}}
}

// mustKV reads key and checks its value and mod revision (value "" and
// mod 0: absent).
func mustKV(t *testing.T, m *Machine, key, value string, mod uint64) {
	t.Helper()
	kv, err := m.Get([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	if got, gotMod := string(kv.GetValue()), kv.GetModRevision(); got != value || gotMod != mod || (kv == nil) != (mod == 0) {
		t.Fatalf("%s: got %q at mod revision %d, want %q at %d", key, got, gotMod, value, mod)
	}
}

func TestKVPutsIsOneAtomicRevision(t *testing.T) {
	e := newEnv(t, KindData)
	apply := e.applyNext()
	apply(putOp("b", "old"), leaseOp(7))
	base := e.m.Revision()
	rs := apply(kvPutsOp(true, kvPut("a", "1", 0), kvPut("b", "2", 7), kvPut("c", "3", 0)))
	r := rs[0]
	if r.Code != logpb.Code_CODE_OK || r.Revision != base+1 {
		t.Fatalf("got %v at revision %d, want OK at %d", r, r.Revision, base+1)
	}
	for _, k := range []string{"a", "b", "c"} {
		mustKV(t, e.m, k, map[string]string{"a": "1", "b": "2", "c": "3"}[k], base+1)
	}
	if len(r.PrevValues) != 3 || len(r.PrevValues[0]) != 0 || len(r.PrevValues[2]) != 0 {
		t.Fatalf("got %d previous values %q, want 3, only b's set", len(r.PrevValues), r.PrevValues)
	}
	prev := &logpb.KV{}
	if err := proto.Unmarshal(r.PrevValues[1], prev); err != nil || string(prev.Value) != "old" {
		t.Fatalf("b's previous: got %v (%v), want value old", prev, err)
	}
	// Three events under the one revision, numbered in op order.
	evs, _, err := e.m.Events(Cursor{Revision: base + 1}, 10)
	if err != nil || len(evs) != 3 {
		t.Fatalf("got %d events (%v), want 3", len(evs), err)
	}
	for i, ev := range evs {
		if ev.Revision != base+1 || string(ev.Event.Key) != string(rune('a'+i)) {
			t.Fatalf("event %d: got key %q at revision %d, want %q at %d", i, ev.Event.Key, ev.Revision, string(rune('a'+i)), base+1)
		}
	}

	// One missing lease refuses the whole op: nothing written, the
	// revision unmoved, the entry at fault named.
	before := dump(t, e.m)
	rs = apply(kvPutsOp(false, kvPut("a", "x", 0), kvPut("d", "y", 99), kvPut("c", "z", 0)))
	if r := rs[0]; r.Code != logpb.Code_CODE_NOT_FOUND || r.Count != 2 || r.Revision != base+1 {
		t.Fatalf("got %v count %d at revision %d, want NOT_FOUND count 2 at %d", r.Code, r.Count, r.Revision, base+1)
	}
	if after := dump(t, e.m); !maps.Equal(before, after) {
		t.Fatalf("a refused multi-put wrote: before %v, after %v", before, after)
	}
	if e.m.Revision() != base+1 {
		t.Fatalf("revision moved on a refused op: %d", e.m.Revision())
	}
}

func TestKVTxnCompares(t *testing.T) {
	e := newEnv(t, KindData)
	apply := e.applyNext()
	apply(putOp("k", "v1"), putOp("k", "v2")) // k: version 2, mod 2, create 1
	cases := []struct {
		name string
		cmp  []*logpb.KVCompare
		want bool
	}{
		{"value equal", []*logpb.KVCompare{cmpValue("k", "v2")}, true},
		{"value differs", []*logpb.KVCompare{cmpValue("k", "v1")}, false},
		{"empty value of an absent key", []*logpb.KVCompare{cmpValue("none", "")}, false},
		{"version equal", []*logpb.KVCompare{cmpVersion("k", 2)}, true},
		{"version differs", []*logpb.KVCompare{cmpVersion("k", 1)}, false},
		{"version 0 of an absent key", []*logpb.KVCompare{cmpVersion("none", 0)}, true},
		{"version 0 of a present key", []*logpb.KVCompare{cmpVersion("k", 0)}, false},
		{"mod revision equal", []*logpb.KVCompare{cmpMod("k", 2)}, true},
		{"mod revision differs", []*logpb.KVCompare{cmpMod("k", 1)}, false},
		{"mod revision 0 of an absent key", []*logpb.KVCompare{cmpMod("none", 0)}, true},
		{"absent of an absent key", []*logpb.KVCompare{cmpAbsent("none", true)}, true},
		{"absent of a present key", []*logpb.KVCompare{cmpAbsent("k", true)}, false},
		{"exists of a present key", []*logpb.KVCompare{cmpAbsent("k", false)}, true},
		{"exists of an absent key", []*logpb.KVCompare{cmpAbsent("none", false)}, false},
		{"all hold", []*logpb.KVCompare{cmpValue("k", "v2"), cmpMod("k", 2), cmpAbsent("none", true)}, true},
		{"one of several fails", []*logpb.KVCompare{cmpValue("k", "v2"), cmpMod("k", 1), cmpAbsent("none", true)}, false},
		{"no compares", nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rev := e.m.Revision()
			r := apply(txnOp(c.cmp, []*logpb.KVTxnOp{tPut("then", c.name, 0)}, []*logpb.KVTxnOp{tPut("else", c.name, 0)}))[0]
			if r.Code != logpb.Code_CODE_OK || r.Succeeded != c.want || r.Revision != rev+1 {
				t.Fatalf("got %v succeeded %v at revision %d, want OK, succeeded %v at %d", r.Code, r.Succeeded, r.Revision, c.want, rev+1)
			}
			ran, other := "then", "else"
			if !c.want {
				ran, other = other, ran
			}
			mustKV(t, e.m, ran, c.name, rev+1)
			if kv, _ := e.m.Get([]byte(other)); kv != nil && kv.ModRevision > rev {
				t.Fatalf("the branch not taken wrote %s", other)
			}
		})
	}
}

func TestKVTxnBranches(t *testing.T) {
	e := newEnv(t, KindData)
	apply := e.applyNext()
	apply(putOp("a", "1"), putOp("b", "2"), leaseOp(5))
	rev := e.m.Revision()

	// A failed compare with no else branch writes nothing, moves no
	// revision, and is an answer, not an error.
	r := apply(txnOp([]*logpb.KVCompare{cmpValue("a", "nope")}, []*logpb.KVTxnOp{tPut("a", "x", 0)}, nil))[0]
	if r.Code != logpb.Code_CODE_OK || r.Succeeded || r.Revision != rev || len(r.Flags) != 0 {
		t.Fatalf("got %v succeeded %v revision %d flags %v, want OK, false, %d, none", r.Code, r.Succeeded, r.Revision, r.Flags, rev)
	}
	mustKV(t, e.m, "a", "1", 1)

	// Success: a put (with lease), a delete of a present and of an absent
	// key, all at one revision; flags say which keys existed.
	r = apply(txnOp([]*logpb.KVCompare{cmpValue("a", "1"), cmpAbsent("c", true)},
		[]*logpb.KVTxnOp{tPut("c", "3", 5), tDel("b"), tDel("zz"), tPut("a", "10", 0)}, nil))[0]
	if r.Code != logpb.Code_CODE_OK || !r.Succeeded || r.Revision != rev+1 {
		t.Fatalf("got %v succeeded %v at %d, want OK, true at %d", r.Code, r.Succeeded, r.Revision, rev+1)
	}
	if want := []bool{false, true, false, true}; !equalBools(r.Flags, want) {
		t.Fatalf("flags: got %v, want %v", r.Flags, want)
	}
	mustKV(t, e.m, "c", "3", rev+1)
	mustKV(t, e.m, "b", "", 0)
	mustKV(t, e.m, "a", "10", rev+1)
	if kv, _ := e.m.Get([]byte("c")); kv.Lease != 5 {
		t.Fatalf("c: got lease %d, want 5", kv.Lease)
	}

	// A missing lease in the branch that runs refuses the whole txn:
	// the delete before it is undone.
	before := dump(t, e.m)
	r = apply(txnOp(nil, []*logpb.KVTxnOp{tDel("a"), tPut("d", "4", 42)}, nil))[0]
	if r.Code != logpb.Code_CODE_NOT_FOUND || r.Count != 2 || !r.Succeeded || r.Revision != rev+1 {
		t.Fatalf("got %v count %d succeeded %v at %d, want NOT_FOUND count 2 succeeded at %d", r.Code, r.Count, r.Succeeded, r.Revision, rev+1)
	}
	if after := dump(t, e.m); !maps.Equal(before, after) {
		t.Fatalf("a refused txn wrote: before %v, after %v", before, after)
	}

	// Compares see the writes of the ops before them in the same entry:
	// the txn is evaluated at its place in the log.
	rs := apply(putOp("e", "new"), txnOp([]*logpb.KVCompare{cmpValue("e", "new")}, []*logpb.KVTxnOp{tPut("seen", "yes", 0)}, nil))
	if !rs[1].Succeeded {
		t.Fatal("a txn did not see the put before it in the same entry")
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestKVBatchOpsRefuseBadInput(t *testing.T) {
	e := newEnv(t, KindData)
	apply := e.applyNext()
	apply(putOp("a", "1"))
	before := dump(t, e.m)
	bad := map[string]*logpb.Op{
		"no puts":                  kvPutsOp(false),
		"a put without a key":      kvPutsOp(false, kvPut("b", "2", 0), kvPut("", "x", 0)),
		"an empty txn":             txnOp(nil, nil, nil),
		"a compare without key":    txnOp([]*logpb.KVCompare{cmpValue("", "1")}, []*logpb.KVTxnOp{tPut("b", "2", 0)}, nil),
		"a compare without target": txnOp([]*logpb.KVCompare{{Key: []byte("a")}}, []*logpb.KVTxnOp{tPut("b", "2", 0)}, nil),
		"an op without a write":    txnOp(nil, []*logpb.KVTxnOp{tPut("b", "2", 0), {}}, nil),
		"an else op without a key": txnOp(nil, []*logpb.KVTxnOp{tPut("b", "2", 0)}, []*logpb.KVTxnOp{tDel("")}),
	}
	for name, op := range bad {
		t.Run(name, func(t *testing.T) {
			if r := apply(op)[0]; r.Code != logpb.Code_CODE_INVALID {
				t.Fatalf("got %v, want INVALID", r.Code)
			}
		})
	}
	if after := dump(t, e.m); !maps.Equal(before, after) {
		t.Fatalf("bad input wrote: before %v, after %v", before, after)
	}
	// The same ops in an offset group are not allowed at all.
	o := newEnv(t, KindOffset)
	if r := o.applyNext()(kvPutsOp(false, kvPut("a", "1", 0)), txnOp(nil, []*logpb.KVTxnOp{tPut("a", "1", 0)}, nil)); r[0].Code != logpb.Code_CODE_INVALID || r[1].Code != logpb.Code_CODE_INVALID {
		t.Fatalf("offset group: got %v, %v; want INVALID twice", r[0].Code, r[1].Code)
	}
}

// A multi-put or txn naming one key the group does not own is refused
// whole (WRONG_GROUP), so each routing key's part stays atomic.
func TestKVBatchOpsCheckOwnership(t *testing.T) {
	e := bareEnv(t, "data-0")
	low, high := keysBySide(1)
	mine, theirs := low[0], high[0]
	apply := e.applyNext()
	apply(ownOp(false, &logpb.HashRange{Lo: 0, Hi: 1 << 31, Version: 1}))
	rs := apply(kvPutsOp(false, kvPut(mine, "1", 0), kvPut(theirs, "2", 0)),
		txnOp([]*logpb.KVCompare{cmpAbsent(theirs, true)}, []*logpb.KVTxnOp{tPut(mine, "1", 0)}, nil),
		txnOp(nil, []*logpb.KVTxnOp{tPut(mine, "1", 0)}, []*logpb.KVTxnOp{tDel(theirs)}))
	for i, r := range rs {
		if r.Code != logpb.Code_CODE_WRONG_GROUP {
			t.Fatalf("op %d: got %v, want WRONG_GROUP", i, r.Code)
		}
	}
	mustKV(t, e.m, mine, "", 0)
	if r := apply(kvPutsOp(false, kvPut(mine, "1", 0)))[0]; r.Code != logpb.Code_CODE_OK {
		t.Fatalf("a multi-put of an owned key: got %v, want OK", r.Code)
	}
}
