package sm

import (
	"bytes"
	"io"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/sm/logpb"
)

// The log-entry decoder and the snapshot reader take bytes that came over
// the network or off a disk; fuzzing them (and the applier behind the
// decoder) looks for inputs that crash a replica or make two replicas
// disagree. A crasher found by `make fuzz` is kept under
// testdata/fuzz/<target>/ and replayed by every `go test` run.

var fuzzKinds = []Kind{KindMetadata, KindData, KindOffset}

// fuzzSeedOps are operations of every kind of state machine, as seeds.
func fuzzSeedOps() []*logpb.Op {
	return []*logpb.Op{
		putOp("k", "v"), delOp("k"), casOp("k", "v", "w", false), casOp("n", "", "x", true),
		commitOp(&logpb.OffsetEntry{Group: "g", Topic: "t", Partition: 1, Offset: 7}),
		{Op: &logpb.Op_SessionsPut{SessionsPut: &logpb.SessionsPut{}}},
		{Op: &logpb.Op_LeaseGrant{LeaseGrant: &logpb.LeaseGrant{Id: 1, TtlSeconds: 10}}},
		{Op: &logpb.Op_ResourceCreate{ResourceCreate: &logpb.ResourceCreate{Kind: 2, Name: "t1"}}},
		{Op: &logpb.Op_BrokerRegister{BrokerRegister: &logpb.BrokerRegister{BrokerId: "b1"}}},
		{Op: &logpb.Op_EventsCompact{EventsCompact: &logpb.EventsCompact{}}},
	}
}

// FuzzDecodeEntry: the decoder refuses what it cannot read, and what it
// reads encodes and decodes back to the same batch.
func FuzzDecodeEntry(f *testing.F) {
	for _, op := range fuzzSeedOps() {
		data, err := EncodeBatch(&logpb.Batch{NowUnixNano: 1, Ops: []*logpb.Op{op}})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte{})
	f.Add([]byte{TypeBatch})
	f.Add([]byte{0x7f, 1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBatch(data)
		if err != nil {
			return
		}
		again, err := EncodeBatch(b)
		if err != nil {
			t.Fatalf("a decoded batch does not encode: %v", err)
		}
		b2, err := DecodeBatch(again)
		if err != nil {
			t.Fatalf("an encoded batch does not decode: %v", err)
		}
		if !proto.Equal(b, b2) {
			t.Fatalf("batch changed through encode and decode:\n%v\n%v", b, b2)
		}
	})
}

// FuzzApplyEntry applies arbitrary batches (the input decoded as one) to
// two replicas of the same kind: applying never crashes, answers one result
// per operation, and leaves both replicas with the same state hash.
func FuzzApplyEntry(f *testing.F) {
	type pair struct {
		a, b  *env
		index uint64
	}
	pairs := make([]*pair, len(fuzzKinds))
	for i, k := range fuzzKinds {
		pairs[i] = &pair{a: newEnv(f, k), b: newEnv(f, k), index: 100}
	}
	for i := range fuzzKinds {
		for _, op := range fuzzSeedOps() {
			f.Add(uint8(i), int64(1), mustMarshal(f, &logpb.Batch{Ops: []*logpb.Op{op}}))
		}
	}
	f.Fuzz(func(t *testing.T, kind uint8, now int64, raw []byte) {
		p := pairs[int(kind)%len(pairs)]
		batch := &logpb.Batch{}
		if (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, batch) != nil {
			return
		}
		batch.NowUnixNano = now
		data, err := EncodeBatch(batch)
		if err != nil {
			return
		}
		p.index++
		l := &raft.Log{Index: p.index, Term: 1, Type: raft.LogCommand, Data: data}
		for _, e := range []*env{p.a, p.b} {
			if got := len(results(t, e.m.Apply(l))); got != len(batch.Ops) {
				t.Fatalf("%d results for %d operations", got, len(batch.Ops))
			}
		}
		ha, err := p.a.m.Hash()
		if err != nil {
			t.Fatal(err)
		}
		hb, err := p.b.m.Hash()
		if err != nil {
			t.Fatal(err)
		}
		if ha != hb {
			t.Fatalf("two replicas disagree after applying %v: %v vs %v", batch, ha, hb)
		}
	})
}

// FuzzRestore: the snapshot reader refuses a damaged or forged snapshot
// without crashing, and the replica still applies and serves afterwards.
func FuzzRestore(f *testing.F) {
	src := newEnv(f, KindData)
	for i, k := range []string{"a", "b", "c"} {
		src.m.Apply(entry(f, uint64(10+i), putOp(k, "v"+k)))
	}
	good := snapshotBytes(f, src.m)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	flipped := bytes.Clone(good)
	flipped[len(flipped)-3] ^= 0xff
	f.Add(flipped)
	dst := newEnv(f, KindData)
	index := uint64(1000)
	f.Fuzz(func(t *testing.T, snap []byte) {
		_ = dst.m.Restore(io.NopCloser(bytes.NewReader(snap)))
		// Whatever the snapshot did, the replica applies the next entry
		// and reads its own write.
		index = max(index, dst.m.AppliedIndex()) + 1
		if got := results(t, dst.m.Apply(entry(t, index, putOp("after", "x")))); len(got) != 1 || got[0].GetCode() != logpb.Code_CODE_OK {
			t.Fatalf("a put after the snapshot: %v", got)
		}
		if kv, err := dst.m.Get([]byte("after")); err != nil || string(kv.GetValue()) != "x" {
			t.Fatalf("after a snapshot the replica lost its own write: %v, %v", kv, err)
		}
	})
}
