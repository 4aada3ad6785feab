package server_test

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

// The KV batch calls against one 3-node cluster with two data groups, both
// through a client that splits by group itself and one pinned to a node
// (which splits, forwards and answers for the whole call).
func TestKVBatchCalls(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{DataGroups: 2})
	routed, pinned := c.Client(""), c.Client(c.IDs()[0])
	t.Run("bad input", func(t *testing.T) { testKVBatchBadInput(t, pinned) })
	for name, cl := range map[string]*client.Client{"routed": routed, "pinned": pinned} {
		t.Run(name+"/multi-put and multi-get", func(t *testing.T) { testMultiPutGet(t, cl, name+"/") })
		t.Run(name+"/partly applied", func(t *testing.T) { testMultiPutPartial(t, cl, name+"/") })
		t.Run(name+"/txn", func(t *testing.T) { testTxn(t, cl, name+"/") })
	}
}

// keysIn returns n keys "<prefix>NNN" of data group g (of 2).
func keysIn(prefix, g string, n int) [][]byte {
	var out [][]byte
	for _, id := range idsIn(prefix, g, 2, n) {
		out = append(out, []byte(id))
	}
	return out
}

func testMultiPutGet(t *testing.T, cl *client.Client, prefix string) {
	keys := append(keysIn(prefix+"a", "data-0", 3), keysIn(prefix+"b", "data-1", 3)...)
	req := &metapb.MultiPutRequest{}
	for i, k := range keys {
		req.Puts = append(req.Puts, &metapb.PutRequest{Key: k, Value: fmt.Appendf(nil, "v%d", i)})
	}
	resp := must(cl.MultiPut(ctx10(t), req))(t)
	if len(resp.Parts) != 2 || len(resp.Results) != len(keys) {
		t.Fatalf("got %d parts, %d results; want 2, %d", len(resp.Parts), len(resp.Results), len(keys))
	}
	revs := map[string]uint64{}
	for _, p := range resp.Parts {
		if p.Outcome != metapb.PartOutcome_PART_OUTCOME_APPLIED || len(p.Indexes) != 3 || p.Header.Revision == 0 {
			t.Fatalf("part %v: want applied, 3 entries, a revision", p)
		}
		revs[p.Header.Group] = p.Header.Revision
	}

	// Every key back, each part's keys at its one revision, version 1; a
	// key that does not exist has version 0.
	missing := []byte(prefix + "missing")
	got := must(cl.MultiGet(ctx10(t), &metapb.MultiGetRequest{Keys: append(append([][]byte{}, keys...), missing)}))(t)
	if len(got.Kvs) != len(keys)+1 || len(got.Headers) != 2 {
		t.Fatalf("got %d kvs, %d headers; want %d, 2", len(got.Kvs), len(got.Headers), len(keys)+1)
	}
	for i, k := range keys {
		kv, g := got.Kvs[i], metapb.DataGroupFor(k, 2)
		if string(kv.Key) != string(k) || string(kv.Value) != fmt.Sprintf("v%d", i) || kv.Version != 1 || kv.ModRevision != revs[g] {
			t.Fatalf("kvs[%d]: got %v, want %s=v%d, version 1, mod revision %d (%s)", i, kv, k, i, revs[g], g)
		}
		if h := resp.Results[i].Header; h.GetRevision() != revs[g] || h.GetGroup() != g {
			t.Fatalf("results[%d] header: got %v, want %s at %d", i, h, g, revs[g])
		}
	}
	if m := got.Kvs[len(keys)]; string(m.Key) != string(missing) || m.Version != 0 || m.Value != nil {
		t.Fatalf("a missing key: got %v, want only its key", m)
	}

	// prev_kv where asked.
	again := must(cl.MultiPut(ctx10(t), &metapb.MultiPutRequest{Puts: []*metapb.PutRequest{
		{Key: keys[0], Value: []byte("x"), PrevKv: true}, {Key: keys[5], Value: []byte("y")}, {Key: missing, Value: []byte("z"), PrevKv: true}}}))(t)
	if p := again.Results[0].PrevKv; string(p.GetValue()) != "v0" || again.Results[1].PrevKv != nil || again.Results[2].PrevKv != nil {
		t.Fatalf("prev kvs: got %v, %v, %v; want v0, none, none", p, again.Results[1].PrevKv, again.Results[2].PrevKv)
	}
	one := must(cl.Get(ctx10(t), &metapb.GetRequest{Key: keys[5]}))(t)
	if string(one.Kv.Value) != "y" || one.Kv.Version != 2 {
		t.Fatalf("get after: got %v, want y at version 2", one.Kv)
	}
	stale := must(cl.MultiGet(ctx10(t), &metapb.MultiGetRequest{Keys: keys[:1], Consistency: metapb.ReadConsistency_READ_CONSISTENCY_STALE}))(t)
	if len(stale.Kvs) != 1 || string(stale.Kvs[0].Key) != string(keys[0]) {
		t.Fatalf("stale multi-get: got %v", stale.Kvs)
	}
}

// A part the state machine refuses (a lease that does not exist: definite)
// leaves the other part applied: the call answers which applied, with a
// PartialError that is not an unknown outcome.
func testMultiPutPartial(t *testing.T, cl *client.Client, prefix string) {
	a, b := keysIn(prefix+"pa", "data-0", 2), keysIn(prefix+"pb", "data-1", 1)
	resp, err := cl.MultiPut(ctx10(t), &metapb.MultiPutRequest{Puts: []*metapb.PutRequest{
		{Key: a[0], Value: []byte("1")}, {Key: b[0], Value: []byte("2"), Lease: 987654321}, {Key: a[1], Value: []byte("3")}}})
	var pe *client.PartialError
	if !errors.As(err, &pe) || client.IsUnknown(err) || resp == nil {
		t.Fatalf("got %v (%v), want a PartialError, not unknown, with the response", err, resp)
	}
	for _, p := range resp.Parts {
		switch p.Header.Group {
		case "data-0":
			if p.Outcome != metapb.PartOutcome_PART_OUTCOME_APPLIED || len(p.Indexes) != 2 || p.Indexes[0] != 0 || p.Indexes[1] != 2 {
				t.Fatalf("data-0's part: got %v, want applied, entries 0 and 2", p)
			}
		case "data-1":
			if p.Outcome != metapb.PartOutcome_PART_OUTCOME_NOT_APPLIED || p.Reason != metapb.ReasonNotFound || len(p.Indexes) != 1 || p.Indexes[0] != 1 {
				t.Fatalf("data-1's part: got %v, want not applied (NOT_FOUND), entry 1", p)
			}
		default:
			t.Fatalf("a part of %q", p.Header.Group)
		}
	}
	got := must(cl.MultiGet(ctx10(t), &metapb.MultiGetRequest{Keys: [][]byte{a[0], b[0], a[1]}}))(t)
	if got.Kvs[0].Version != 1 || got.Kvs[1].Version != 0 || got.Kvs[2].Version != 1 {
		t.Fatalf("after a partly applied put: got %v, want a's keys written, b's not", got.Kvs)
	}

	// Only one group, refused: the call fails as a Put would, naming the
	// field.
	_, err = cl.MultiPut(ctx10(t), &metapb.MultiPutRequest{Puts: []*metapb.PutRequest{
		{Key: b[0], Value: []byte("1")}, {Key: []byte(prefix + "pb-other"), Value: []byte("2"), Lease: 987654321}}})
	if metapb.DataGroupFor([]byte(prefix+"pb-other"), 2) == "data-1" {
		wantStatus(t, err, codes.NotFound, metapb.ReasonNotFound, "puts[1].lease")
	} else if !errors.As(err, &pe) {
		t.Fatalf("got %v, want a PartialError", err)
	}
}

func testTxn(t *testing.T, cl *client.Client, prefix string) {
	ks := keysIn(prefix+"t", "data-1", 4)
	k0, k1, k2, never := ks[0], ks[1], ks[2], ks[3]
	ks = ks[:3]
	put := func(k []byte, v string, prev bool) *metapb.TxnOp {
		return &metapb.TxnOp{Op: &metapb.TxnOp_Put{Put: &metapb.PutRequest{Key: k, Value: []byte(v), PrevKv: prev}}}
	}
	del := func(k []byte) *metapb.TxnOp {
		return &metapb.TxnOp{Op: &metapb.TxnOp_Delete{Delete: &metapb.DeleteRequest{Key: k, PrevKv: true}}}
	}
	absent := func(k []byte) *metapb.Compare {
		return &metapb.Compare{Key: k, Target: &metapb.Compare_Absent{Absent: true}}
	}

	// Create two keys if both are absent: succeeds once, then fails and
	// takes the else branch.
	create := &metapb.TxnRequest{Compare: []*metapb.Compare{absent(k0), absent(k1)},
		Success: []*metapb.TxnOp{put(k0, "a", false), put(k1, "b", false)}, Failure: []*metapb.TxnOp{put(k2, "lost", false)}}
	first := must(cl.Txn(ctx10(t), create))(t)
	if !first.Succeeded || len(first.Results) != 2 || first.Header.Group != "data-1" || first.Header.Revision == 0 {
		t.Fatalf("first create: got %v, want succeeded with 2 results in data-1", first)
	}
	second := must(cl.Txn(ctx10(t), create))(t)
	if second.Succeeded || len(second.Results) != 1 || second.Header.Revision <= first.Header.Revision {
		t.Fatalf("second create: got %v, want failed, the else branch's one result at a later revision", second)
	}
	got := must(cl.MultiGet(ctx10(t), &metapb.MultiGetRequest{Keys: ks}))(t)
	if string(got.Kvs[0].Value) != "a" || got.Kvs[0].ModRevision != first.Header.Revision || string(got.Kvs[1].Value) != "b" ||
		got.Kvs[1].ModRevision != first.Header.Revision || string(got.Kvs[2].Value) != "lost" {
		t.Fatalf("after: got %v, want a and b at %d, lost", got.Kvs, first.Header.Revision)
	}

	// Swap on value and mod revision; results carry prev values and
	// whether a deleted key existed.
	swap := &metapb.TxnRequest{Compare: []*metapb.Compare{
		{Key: k0, Target: &metapb.Compare_Value{Value: []byte("a")}},
		{Key: k1, Target: &metapb.Compare_ModRevision{ModRevision: first.Header.Revision}},
		{Key: k1, Target: &metapb.Compare_Version{Version: 1}}},
		Success: []*metapb.TxnOp{put(k0, "a2", true), del(k1), del(never)}}
	sw := must(cl.Txn(ctx10(t), swap))(t)
	if !sw.Succeeded || len(sw.Results) != 3 {
		t.Fatalf("swap: got %v, want succeeded with 3 results", sw)
	}
	if p := sw.Results[0].GetPut().GetPrevKv(); string(p.GetValue()) != "a" {
		t.Fatalf("swap's put: got prev %v, want a", p)
	}
	if d := sw.Results[1].GetDelete(); !d.GetDeleted() || string(d.GetPrevKv().GetValue()) != "b" {
		t.Fatalf("swap's delete: got %v, want deleted, prev b", d)
	}
	if d := sw.Results[2].GetDelete(); d.GetDeleted() || d.GetPrevKv() != nil {
		t.Fatalf("delete of an absent key: got %v, want not deleted", d)
	}
	// The same swap again fails on the first compare and writes nothing.
	rev := sw.Header.Revision
	if again := must(cl.Txn(ctx10(t), swap))(t); again.Succeeded || len(again.Results) != 0 || again.Header.Revision < rev {
		t.Fatalf("swap again: got %v, want failed, nothing written, at revision %d or later", again, rev)
	}
	if kv := must(cl.Get(ctx10(t), &metapb.GetRequest{Key: k0}))(t).Kv; kv.GetModRevision() != rev {
		t.Fatalf("a failed swap wrote k0: got %v, want it at revision %d", kv, rev)
	}

	// A lease that does not exist fails the whole txn, naming the field.
	_, err := cl.Txn(ctx10(t), &metapb.TxnRequest{Success: []*metapb.TxnOp{del(k0),
		{Op: &metapb.TxnOp_Put{Put: &metapb.PutRequest{Key: k2, Value: []byte("v"), Lease: 987654321}}}}})
	wantStatus(t, err, codes.NotFound, metapb.ReasonNotFound, "success[1].put.lease")
	if kv := must(cl.Get(ctx10(t), &metapb.GetRequest{Key: k0}))(t).Kv; string(kv.GetValue()) != "a2" {
		t.Fatalf("a refused txn deleted k0: got %v", kv)
	}
}

func testKVBatchBadInput(t *testing.T, cl *client.Client) {
	k0, k1 := keysIn("bad", "data-0", 1)[0], keysIn("bad", "data-1", 1)[0]
	big := make([]byte, metapb.MaxValueBytes)
	manyPuts := func(n int, value []byte) []*metapb.PutRequest {
		var out []*metapb.PutRequest
		for i := range n {
			out = append(out, &metapb.PutRequest{Key: fmt.Appendf(nil, "many%05d", i), Value: value})
		}
		return out
	}
	manyKeys := make([][]byte, metapb.MaxBatchEntries+1)
	for i := range manyKeys {
		manyKeys[i] = []byte("k")
	}
	manyCompares := make([]*metapb.Compare, metapb.MaxBatchEntries+1)
	for i := range manyCompares {
		manyCompares[i] = &metapb.Compare{Key: k0, Target: &metapb.Compare_Absent{Absent: true}}
	}
	putOp := func(k []byte) *metapb.TxnOp {
		return &metapb.TxnOp{Op: &metapb.TxnOp_Put{Put: &metapb.PutRequest{Key: k, Value: []byte("v")}}}
	}
	cmpAbsent := func(k []byte) *metapb.Compare {
		return &metapb.Compare{Key: k, Target: &metapb.Compare_Absent{Absent: true}}
	}
	for _, tc := range []struct {
		name, field string
		call        func() error
	}{
		{"empty multi-put", "puts", func() error { _, err := cl.MultiPut(ctx10(t), &metapb.MultiPutRequest{}); return err }},
		{"empty multi-get", "keys", func() error { _, err := cl.MultiGet(ctx10(t), &metapb.MultiGetRequest{}); return err }},
		{"empty txn", "compare", func() error { _, err := cl.Txn(ctx10(t), &metapb.TxnRequest{}); return err }},
		{"too many puts", "puts", func() error {
			_, err := cl.MultiPut(ctx10(t), &metapb.MultiPutRequest{Puts: manyPuts(metapb.MaxBatchEntries+1, nil)})
			return err
		}},
		{"too many bytes", "puts", func() error {
			_, err := cl.MultiPut(ctx10(t), &metapb.MultiPutRequest{Puts: manyPuts(metapb.MaxBatchBytes/metapb.MaxValueBytes, big)})
			return err
		}},
		{"too many keys", "keys", func() error {
			_, err := cl.MultiGet(ctx10(t), &metapb.MultiGetRequest{Keys: manyKeys})
			return err
		}},
		{"too many compares", "compare", func() error {
			_, err := cl.Txn(ctx10(t), &metapb.TxnRequest{Compare: manyCompares})
			return err
		}},
		{"an empty key", "puts[1].key", func() error {
			_, err := cl.MultiPut(ctx10(t), &metapb.MultiPutRequest{Puts: []*metapb.PutRequest{{Key: k0}, {Value: []byte("v")}}})
			return err
		}},
		{"a repeated key", "puts[1].key", func() error {
			_, err := cl.MultiPut(ctx10(t), &metapb.MultiPutRequest{Puts: []*metapb.PutRequest{{Key: k0}, {Key: k0}}})
			return err
		}},
		{"a negative lease", "puts[0].lease", func() error {
			_, err := cl.MultiPut(ctx10(t), &metapb.MultiPutRequest{Puts: []*metapb.PutRequest{{Key: k0, Lease: -1}}})
			return err
		}},
		{"a bad consistency", "consistency", func() error {
			_, err := cl.MultiGet(ctx10(t), &metapb.MultiGetRequest{Keys: [][]byte{k0}, Consistency: 9})
			return err
		}},
		{"a compare of another group", "compare[1].key", func() error {
			_, err := cl.Txn(ctx10(t), &metapb.TxnRequest{Compare: []*metapb.Compare{cmpAbsent(k0), cmpAbsent(k1)}, Success: []*metapb.TxnOp{putOp(k0)}})
			return err
		}},
		{"an op of another group", "success[0].put.key", func() error {
			_, err := cl.Txn(ctx10(t), &metapb.TxnRequest{Compare: []*metapb.Compare{cmpAbsent(k0)}, Success: []*metapb.TxnOp{putOp(k1)}})
			return err
		}},
		{"an else op of another group", "failure[0].delete.key", func() error {
			_, err := cl.Txn(ctx10(t), &metapb.TxnRequest{Success: []*metapb.TxnOp{putOp(k0)},
				Failure: []*metapb.TxnOp{{Op: &metapb.TxnOp_Delete{Delete: &metapb.DeleteRequest{Key: k1}}}}})
			return err
		}},
		{"a compare without a target", "compare[0].target", func() error {
			_, err := cl.Txn(ctx10(t), &metapb.TxnRequest{Compare: []*metapb.Compare{{Key: k0}}})
			return err
		}},
		{"an op without a write", "success[1]", func() error {
			_, err := cl.Txn(ctx10(t), &metapb.TxnRequest{Success: []*metapb.TxnOp{putOp(k0), {}}})
			return err
		}},
		{"a key twice in a branch", "success[1].put.key", func() error {
			_, err := cl.Txn(ctx10(t), &metapb.TxnRequest{Success: []*metapb.TxnOp{putOp(k0), putOp(k0)}})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantStatus(t, tc.call(), codes.InvalidArgument, metapb.ReasonInvalidArgument, tc.field)
		})
	}
	// Nothing was written.
	got := must(cl.MultiGet(ctx10(t), &metapb.MultiGetRequest{Keys: [][]byte{k0, k1, []byte("many00000")}}))(t)
	for _, kv := range got.Kvs {
		if kv.Version != 0 {
			t.Fatalf("bad input wrote %v", kv)
		}
	}
}

// On a node without raft: bad input proposes nothing, and a MultiPut whose
// parts fail in one group reports each part by its error's class: an
// unknown outcome as unknown, never as not applied; when no part applied
// the call fails, unknown if any part may have applied.
func TestMultiPutPartsOnAFakeNode(t *testing.T) {
	n := newFakeNode(t, 2)
	conn, cl := serveFake(t, n)
	t.Run("bad input", func(t *testing.T) {
		testKVBatchBadInput(t, cl)
		if p := n.proposals(); p != 0 {
			t.Fatalf("bad input proposed %d operations, want none", p)
		}
	})
	kv := metapb.NewKVClient(conn)
	a, b := keysIn("fa", "data-0", 1)[0], keysIn("fb", "data-1", 1)[0]
	req := &metapb.MultiPutRequest{Puts: []*metapb.PutRequest{{Key: a, Value: []byte("1")}, {Key: b, Value: []byte("2")}}}
	notLeader := metapb.NewError(metapb.ReasonNotLeader, nil, "not the leader")
	lost := errors.New("leadership lost after proposing") // no reason: unknown for a write
	for _, tc := range []struct {
		name         string
		fail0, fail1 error
		wantCode     codes.Code // OK: the response reports the parts
		want0, want1 metapb.PartOutcome
		wantReason1  string
	}{
		{"one part unknown", nil, lost, codes.OK, metapb.PartOutcome_PART_OUTCOME_APPLIED, metapb.PartOutcome_PART_OUTCOME_UNKNOWN, metapb.ReasonOutcomeUnknown},
		{"one part not applied", nil, notLeader, codes.OK, metapb.PartOutcome_PART_OUTCOME_APPLIED, metapb.PartOutcome_PART_OUTCOME_NOT_APPLIED, metapb.ReasonNotLeader},
		{"none applied, one unknown", notLeader, lost, codes.Unknown, 0, 0, ""},
		{"none applied", notLeader, notLeader, codes.Unavailable, 0, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n.failProposalsOf("data-0", tc.fail0)
			n.failProposalsOf("data-1", tc.fail1)
			resp, err := kv.MultiPut(ctx10(t), req)
			if tc.wantCode != codes.OK {
				if status.Code(err) != tc.wantCode {
					t.Fatalf("got %v, want code %s", err, tc.wantCode)
				}
				return
			}
			if err != nil || len(resp.Parts) != 2 {
				t.Fatalf("got %v, %v; want 2 parts", resp, err)
			}
			p0, p1 := resp.Parts[0], resp.Parts[1]
			if p0.Outcome != tc.want0 || p1.Outcome != tc.want1 || p1.Reason != tc.wantReason1 || p0.Header.Group != "data-0" || p1.Header.Group != "data-1" {
				t.Fatalf("parts: got %v, %v; want data-0 %s, data-1 %s (%s)", p0, p1, tc.want0, tc.want1, tc.wantReason1)
			}
			if resp.Results[0].Header.GetRevision() == 0 || resp.Results[1].Header != nil {
				t.Fatalf("results: got %v; want the first applied, the second without a header", resp.Results)
			}
		})
	}
	n.failProposalsOf("data-0", nil)
	n.failProposalsOf("data-1", nil)
}
