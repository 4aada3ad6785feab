package sm

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/metamq/meta/rocks"
	"github.com/metamq/meta/sm/logpb"
)

// --- helpers ---

type env struct {
	t     testing.TB
	dir   string
	group string
	kind  Kind
	db    *rocks.DB
	m     *Machine
	// bare: leave a routed machine without an ownership record (as an
	// earlier release left it).
	bare bool
	// level is the machine's Config.Level (0: FeatureLevel).
	level uint32
}

func newEnv(t testing.TB, kind Kind) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), group: kind.String() + "-0", kind: kind}
	e.open()
	t.Cleanup(func() { e.close() })
	return e
}

// bareEnv is an open data machine of group that owns nothing yet (bare:
// no ownership record), closed when the test ends.
func bareEnv(t testing.TB, group string) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), group: group, kind: KindData, bare: true}
	e.open()
	t.Cleanup(e.close)
	return e
}

// applyNext returns a function that applies ops as the machine's next
// entry (indexes 1, 2, ...) and returns their results.
func (e *env) applyNext() func(ops ...*logpb.Op) []*logpb.Result {
	idx := uint64(0)
	return func(ops ...*logpb.Op) []*logpb.Result {
		idx++
		return results(e.t, e.m.Apply(entry(e.t, idx, ops...)))
	}
}

func (e *env) open() {
	e.t.Helper()
	opts := rocks.DefaultOptions(filepath.Join(e.dir, "db"))
	opts.BlockCacheBytes = 4 << 20
	opts.WriteBufferBytes = 8 << 20
	db, err := rocks.Open(opts, []string{e.group})
	if err != nil {
		e.t.Fatalf("open: %v", err)
	}
	m, err := New(Config{Kind: e.kind, Group: e.group, DB: db, Level: e.level})
	if err != nil {
		e.t.Fatalf("new machine: %v", err)
	}
	if m.Ownership() == nil && !e.bare {
		ownEverything(e.t, m)
	}
	e.db, e.m = db, m
}

func (e *env) close() {
	if e.db != nil {
		e.m.Close()
		_ = e.db.Close()
		e.db = nil
	}
}

// reopen simulates a restart on the same data.
func (e *env) reopen() {
	e.close()
	e.open()
}

func entry(t testing.TB, index uint64, ops ...*logpb.Op) *raft.Log {
	t.Helper()
	data, err := EncodeBatch(&logpb.Batch{NowUnixNano: int64(index), Ops: ops})
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

func putOp(k, v string) *logpb.Op {
	return &logpb.Op{Op: &logpb.Op_Put{Put: &logpb.KVPut{Key: []byte(k), Value: []byte(v)}}}
}

func delOp(k string) *logpb.Op {
	return &logpb.Op{Op: &logpb.Op_Delete{Delete: &logpb.KVDelete{Key: []byte(k)}}}
}

func casOp(k, old, v string, absent bool) *logpb.Op {
	return &logpb.Op{Op: &logpb.Op_Cas{Cas: &logpb.KVCompareAndSwap{Key: []byte(k), ExpectedValue: []byte(old), ExpectAbsent: absent, NewValue: []byte(v)}}}
}

func commitOp(entries ...*logpb.OffsetEntry) *logpb.Op {
	return &logpb.Op{Op: &logpb.Op_OffsetCommit{OffsetCommit: &logpb.OffsetCommit{Entries: entries}}}
}

func results(t testing.TB, r interface{}) []*logpb.Result {
	t.Helper()
	br, ok := r.(*BatchResult)
	if !ok {
		t.Fatalf("apply returned %T, want *BatchResult", r)
	}
	return br.Results
}

// snapshotBytes returns a file stream of m's data as SnapStore sends it,
// tagged with the machine's applied index and term as raft's snapshot
// index and term.
func snapshotBytes(t testing.TB, m *Machine) []byte {
	t.Helper()
	return snapshotBytesOf(t, m, 0)
}

// snapshotBytesOf is snapshotBytes with SST files of about fileBytes of
// keys and values each (0: the default).
func snapshotBytesOf(t testing.TB, m *Machine, fileBytes int64) []byte {
	t.Helper()
	dir := t.TempDir()
	h, err := m.export(dir, m.AppliedIndex(), m.term.Load(), 0, fileBytes)
	if err != nil {
		t.Fatal(err)
	}
	return streamBytes(t, h, dir)
}

// streamBytes is the file stream of header h and its files in dir.
func streamBytes(t testing.TB, h *snapHeader, dir string) []byte {
	t.Helper()
	out, err := h.encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range h.Files {
		b, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

// memSink is a raft.SnapshotSink into memory.
type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

// dump returns every stored user key and value, without the change log.
func dump(t testing.TB, m *Machine) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := m.space.Scan(userStart, userEnd, func(k, v []byte) bool {
		if k[0] != prefixEvent {
			out[string(k)] = string(v)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// --- unit tests ---

func TestApplyDataOps(t *testing.T) {
	e := newEnv(t, KindData)
	rs := results(t, e.m.Apply(entry(t, 1, putOp("a", "1"), putOp("a", "2"), casOp("a", "1", "x", false), casOp("a", "2", "3", false),
		delOp("missing"), casOp("b", "", "new", true), casOp("b", "", "again", true), delOp("b"))))
	want := []struct {
		code logpb.Code
		rev  uint64
	}{
		{logpb.Code_CODE_OK, 1}, {logpb.Code_CODE_OK, 2}, {logpb.Code_CODE_COMPARE_FAILED, 2}, {logpb.Code_CODE_OK, 3},
		{logpb.Code_CODE_NOT_FOUND, 3}, {logpb.Code_CODE_OK, 4}, {logpb.Code_CODE_COMPARE_FAILED, 4}, {logpb.Code_CODE_OK, 5},
	}
	for i, w := range want {
		if rs[i].Code != w.code || rs[i].Revision != w.rev {
			t.Errorf("op %d: got code %v rev %d, want %v rev %d", i, rs[i].Code, rs[i].Revision, w.code, w.rev)
		}
	}
	kv, err := e.m.Get([]byte("a"))
	if err != nil || kv == nil || string(kv.Value) != "3" || kv.Version != 3 || kv.CreateRevision != 1 || kv.ModRevision != 3 {
		t.Fatalf("a: got %v (err %v), want value 3, version 3, create 1, mod 3", kv, err)
	}
	if e.m.AppliedIndex() != 1 || e.m.Revision() != 5 {
		t.Fatalf("got applied %d revision %d, want 1, 5", e.m.AppliedIndex(), e.m.Revision())
	}
}

func TestOpsOfOtherKindsAreInvalid(t *testing.T) {
	e := newEnv(t, KindOffset)
	rs := results(t, e.m.Apply(entry(t, 1, putOp("a", "1"), commitOp(&logpb.OffsetEntry{Group: "g", Topic: "t", Offset: 1}))))
	if rs[0].Code != logpb.Code_CODE_INVALID || rs[1].Code != logpb.Code_CODE_OK {
		t.Fatalf("got %v, %v; want INVALID then OK", rs[0].Code, rs[1].Code)
	}
}

func TestOffsetCommitIsAtomic(t *testing.T) {
	e := newEnv(t, KindOffset)
	rs := results(t, e.m.Apply(entry(t, 1, commitOp(
		&logpb.OffsetEntry{Group: "g", Topic: "t", Partition: 0, Offset: 5},
		&logpb.OffsetEntry{Group: "g", Topic: "", Partition: 1, Offset: 6}))))
	if rs[0].Code != logpb.Code_CODE_INVALID {
		t.Fatalf("got %v, want INVALID", rs[0].Code)
	}
	if o, _ := e.m.Offset("g", "t", 0); o != nil {
		t.Fatalf("first entry of an invalid batch was written: %v", o)
	}
	if e.m.Revision() != 0 {
		t.Fatalf("revision moved on a failed op: %d", e.m.Revision())
	}
}

func TestOffsetDeleteGroupSeesSameBatch(t *testing.T) {
	e := newEnv(t, KindOffset)
	rs := results(t, e.m.Apply(entry(t, 1,
		commitOp(&logpb.OffsetEntry{Group: "g", Topic: "t", Partition: 0, Offset: 5}, &logpb.OffsetEntry{Group: "g", Topic: "u", Partition: 3, Offset: 1}),
		commitOp(&logpb.OffsetEntry{Group: "gg", Topic: "t", Partition: 0, Offset: 9}),
		&logpb.Op{Op: &logpb.Op_OffsetDeleteGroup{OffsetDeleteGroup: &logpb.OffsetDeleteGroup{Group: "g"}}})))
	if rs[2].Code != logpb.Code_CODE_OK || rs[2].Count != 2 {
		t.Fatalf("delete group: got %v count %d, want OK 2", rs[2].Code, rs[2].Count)
	}
	if o, _ := e.m.Offset("gg", "t", 0); o == nil || o.Offset != 9 {
		t.Fatalf("group gg (a prefix sibling of g) was touched: %v", o)
	}
}

func TestRestartSkipsAppliedEntries(t *testing.T) {
	e := newEnv(t, KindData)
	logs := []*raft.Log{entry(t, 1, putOp("a", "1")), entry(t, 2, casOp("a", "1", "2", false)), entry(t, 3, putOp("b", "x"))}
	e.m.ApplyBatch(logs)
	before := dump(t, e.m)
	e.reopen()
	if e.m.AppliedIndex() != 3 || e.m.Revision() != 3 {
		t.Fatalf("after reopen: applied %d revision %d, want 3, 3", e.m.AppliedIndex(), e.m.Revision())
	}
	// Raft re-delivers everything after the last snapshot.
	out := e.m.ApplyBatch(append(logs, entry(t, 4, putOp("c", "y"))))
	for i := 0; i < 3; i++ {
		if out[i] != nil {
			t.Fatalf("re-delivered entry %d produced %v, want nil (skipped)", i+1, out[i])
		}
	}
	after := dump(t, e.m)
	delete(after, string(kvKey([]byte("c"))))
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("re-applying changed state:\n got %v\nwant %v", after, before)
	}
}

func TestSnapshotRestoreReplacesWholly(t *testing.T) {
	for _, kind := range []Kind{KindData, KindOffset, KindMetadata} {
		t.Run(kind.String(), func(t *testing.T) {
			src := newEnv(t, kind)
			var ops []*logpb.Op
			switch kind {
			case KindData:
				ops = []*logpb.Op{putOp("a", "1"), putOp("b", ""), putOp("c", "3")}
			case KindOffset:
				ops = []*logpb.Op{commitOp(&logpb.OffsetEntry{Group: "g", Topic: "t", Offset: 1, Metadata: "m"})}
			case KindMetadata:
				ops = []*logpb.Op{{Op: &logpb.Op_ClusterInit{ClusterInit: &logpb.ClusterInit{ClusterId: "c", OffsetGroups: 1, DataGroups: 1,
					Members: []*logpb.MemberPut{{Id: "n1", Addr: "a:1"}}}}}}
			}
			src.m.Apply(entry(t, 7, ops...))
			data := snapshotBytes(t, src.m)

			dst := newEnv(t, kind)
			// Stale state that must not survive the restore.
			switch kind {
			case KindData:
				dst.m.Apply(entry(t, 1, putOp("stale", "x")))
			case KindOffset:
				dst.m.Apply(entry(t, 1, commitOp(&logpb.OffsetEntry{Group: "old", Topic: "t", Offset: 1})))
			case KindMetadata:
				dst.m.Apply(entry(t, 1, &logpb.Op{Op: &logpb.Op_MemberPut{MemberPut: &logpb.MemberPut{Id: "zz", Addr: "b:2"}}}))
			}
			if err := dst.m.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
				t.Fatal(err)
			}
			if got, want := dump(t, dst.m), dump(t, src.m); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("restored state:\n got %v\nwant %v", got, want)
			}
			if dst.m.AppliedIndex() != 7 || dst.m.Revision() != src.m.Revision() {
				t.Fatalf("restored applied %d revision %d, want 7, %d", dst.m.AppliedIndex(), dst.m.Revision(), src.m.Revision())
			}
			sh, _ := src.m.Hash()
			dh, _ := dst.m.Hash()
			if sh != dh {
				t.Fatalf("hash: got %+v, want %+v", dh, sh)
			}
			// The restored state survives a restart.
			dst.reopen()
			if got, want := dump(t, dst.m), dump(t, src.m); fmt.Sprint(got) != fmt.Sprint(want) || dst.m.AppliedIndex() != 7 {
				t.Fatalf("after reopen: got %v at %d", got, dst.m.AppliedIndex())
			}
		})
	}
}

// --- model-based property test ---

type modelKV struct {
	value                string
	create, mod, version uint64
}

type model struct {
	rev       uint64
	kv        map[string]modelKV
	offsets   map[string]int64
	resources map[string]modelKV // name -> spec as value
}

func (md *model) apply(op *logpb.Op) (logpb.Code, uint64) {
	switch o := op.Op.(type) {
	case *logpb.Op_Put:
		md.put(string(o.Put.Key), string(o.Put.Value))
		return logpb.Code_CODE_OK, md.rev
	case *logpb.Op_Delete:
		if _, ok := md.kv[string(o.Delete.Key)]; !ok {
			return logpb.Code_CODE_NOT_FOUND, md.rev
		}
		md.rev++
		delete(md.kv, string(o.Delete.Key))
		return logpb.Code_CODE_OK, md.rev
	case *logpb.Op_Cas:
		cur, ok := md.kv[string(o.Cas.Key)]
		if (o.Cas.ExpectAbsent && ok) || (!o.Cas.ExpectAbsent && (!ok || cur.value != string(o.Cas.ExpectedValue))) {
			return logpb.Code_CODE_COMPARE_FAILED, md.rev
		}
		md.put(string(o.Cas.Key), string(o.Cas.NewValue))
		return logpb.Code_CODE_OK, md.rev
	case *logpb.Op_OffsetCommit:
		md.rev++
		for _, e := range o.OffsetCommit.Entries {
			md.offsets[fmt.Sprintf("%s/%s/%d", e.Group, e.Topic, e.Partition)] = e.Offset
		}
		return logpb.Code_CODE_OK, md.rev
	case *logpb.Op_ResourceCreate:
		if _, ok := md.resources[o.ResourceCreate.Name]; ok {
			return logpb.Code_CODE_CONFLICT, md.rev
		}
		md.rev++
		md.resources[o.ResourceCreate.Name] = modelKV{value: string(o.ResourceCreate.Spec), create: md.rev, mod: md.rev, version: 1}
		return logpb.Code_CODE_OK, md.rev
	case *logpb.Op_ResourceUpdate:
		cur, ok := md.resources[o.ResourceUpdate.Name]
		if !ok {
			return logpb.Code_CODE_NOT_FOUND, md.rev
		}
		if cur.mod != o.ResourceUpdate.ExpectedRevision {
			return logpb.Code_CODE_COMPARE_FAILED, md.rev
		}
		md.rev++
		md.resources[o.ResourceUpdate.Name] = modelKV{value: string(o.ResourceUpdate.Spec), create: cur.create, mod: md.rev, version: cur.version + 1}
		return logpb.Code_CODE_OK, md.rev
	case *logpb.Op_ResourceDelete:
		cur, ok := md.resources[o.ResourceDelete.Name]
		if !ok {
			return logpb.Code_CODE_NOT_FOUND, md.rev
		}
		if o.ResourceDelete.ExpectedRevision != 0 && cur.mod != o.ResourceDelete.ExpectedRevision {
			return logpb.Code_CODE_COMPARE_FAILED, md.rev
		}
		md.rev++
		delete(md.resources, o.ResourceDelete.Name)
		return logpb.Code_CODE_OK, md.rev
	case *logpb.Op_OffsetDeleteGroup:
		n := 0
		for k := range md.offsets {
			if g, _, _ := cutGroup(k); g == o.OffsetDeleteGroup.Group {
				delete(md.offsets, k)
				n++
			}
		}
		if n == 0 {
			return logpb.Code_CODE_NOT_FOUND, md.rev
		}
		md.rev++
		return logpb.Code_CODE_OK, md.rev
	}
	panic("unexpected op")
}

func cutGroup(k string) (string, string, bool) {
	for i := 0; i < len(k); i++ {
		if k[i] == '/' {
			return k[:i], k[i+1:], true
		}
	}
	return k, "", false
}

func (md *model) put(k, v string) {
	md.rev++
	cur, ok := md.kv[k]
	if !ok {
		md.kv[k] = modelKV{value: v, create: md.rev, mod: md.rev, version: 1}
		return
	}
	md.kv[k] = modelKV{value: v, create: cur.create, mod: md.rev, version: cur.version + 1}
}

func genOp(kind Kind) *rapid.Generator[*logpb.Op] {
	key := rapid.SampledFrom([]string{"a", "b", "c", "ab", "b\x00"})
	val := rapid.StringMatching(`[xyz]{0,3}`)
	if kind == KindMetadata {
		name := rapid.SampledFrom([]string{"orders", "order", "x"})
		rev := rapid.Uint64Range(0, 12)
		return rapid.Custom(func(t *rapid.T) *logpb.Op {
			n, spec := name.Draw(t, "name"), []byte(val.Draw(t, "spec"))
			switch rapid.IntRange(0, 2).Draw(t, "kind") {
			case 0:
				return &logpb.Op{Op: &logpb.Op_ResourceCreate{ResourceCreate: &logpb.ResourceCreate{Kind: 2, Name: n, Spec: spec}}}
			case 1:
				return &logpb.Op{Op: &logpb.Op_ResourceUpdate{ResourceUpdate: &logpb.ResourceUpdate{Kind: 2, Name: n, Spec: spec, ExpectedRevision: rev.Draw(t, "rev")}}}
			default:
				return &logpb.Op{Op: &logpb.Op_ResourceDelete{ResourceDelete: &logpb.ResourceDelete{Kind: 2, Name: n, ExpectedRevision: rev.Draw(t, "rev")}}}
			}
		})
	}
	if kind == KindOffset {
		group := rapid.SampledFrom([]string{"g", "gg", "h"})
		return rapid.Custom(func(t *rapid.T) *logpb.Op {
			if rapid.IntRange(0, 9).Draw(t, "deleteGroup") == 0 {
				return &logpb.Op{Op: &logpb.Op_OffsetDeleteGroup{OffsetDeleteGroup: &logpb.OffsetDeleteGroup{Group: group.Draw(t, "g")}}}
			}
			n := rapid.IntRange(1, 3).Draw(t, "n")
			var es []*logpb.OffsetEntry
			for i := 0; i < n; i++ {
				es = append(es, &logpb.OffsetEntry{Group: group.Draw(t, "g"), Topic: rapid.SampledFrom([]string{"t", "u"}).Draw(t, "t"),
					Partition: rapid.Int32Range(0, 2).Draw(t, "p"), Offset: rapid.Int64Range(0, 100).Draw(t, "o")})
			}
			return commitOp(es...)
		})
	}
	return rapid.Custom(func(t *rapid.T) *logpb.Op {
		switch rapid.IntRange(0, 3).Draw(t, "kind") {
		case 0:
			return putOp(key.Draw(t, "k"), val.Draw(t, "v"))
		case 1:
			return delOp(key.Draw(t, "k"))
		case 2:
			return casOp(key.Draw(t, "k"), val.Draw(t, "old"), val.Draw(t, "v"), false)
		default:
			return casOp(key.Draw(t, "k"), "", val.Draw(t, "v"), true)
		}
	})
}

// Each state machine against a plain map: random batches of operations,
// snapshot/restore into a replica holding stale state at random points,
// and restarts in which raft re-delivers entries that were already
// applied. One database serves every check (opening one costs a few
// hundred milliseconds): a restart re-creates the Machine from what is
// stored, which is the state a reopened database holds (a real reopen is
// covered by TestRestartSkipsAppliedEntries).
func TestMachineAgainstModel(t *testing.T) {
	for _, kind := range []Kind{KindData, KindOffset, KindMetadata} {
		t.Run(kind.String(), func(t *testing.T) {
			groups := []string{kind.String() + "-0", kind.String() + "-1"}
			opts := rocks.DefaultOptions(filepath.Join(t.TempDir(), "db"))
			opts.BlockCacheBytes, opts.WriteBufferBytes = 4<<20, 8<<20
			db, err := rocks.Open(opts, groups)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			machine := func(rt *rapid.T, g string) *Machine {
				m, err := New(Config{Kind: kind, Group: g, DB: db})
				if err != nil {
					rt.Fatal(err)
				}
				if m.Ownership() == nil {
					ownEverything(t, m)
				}
				return m
			}
			rapid.Check(t, func(rt *rapid.T) {
				for _, g := range groups {
					s, _ := db.Data(g)
					if err := s.DeleteAll(false); err != nil {
						rt.Fatal(err)
					}
				}
				cur := 0
				m := machine(rt, groups[cur])
				md := &model{kv: map[string]modelKV{}, offsets: map[string]int64{}, resources: map[string]modelKV{}}
				var logs []*raft.Log
				steps := rapid.IntRange(1, 25).Draw(rt, "steps")
				for s := 0; s < steps; s++ {
					switch rapid.IntRange(0, 9).Draw(rt, "action") {
					case 0: // restart; raft re-delivers a suffix
						m.Close()
						m = machine(rt, groups[cur])
						from := rapid.IntRange(0, len(logs)).Draw(rt, "redeliverFrom")
						for _, r := range m.ApplyBatch(logs[from:]) {
							if r != nil {
								rt.Fatalf("re-delivered entry was applied again: %v", r)
							}
						}
					case 1: // snapshot into the other replica, which takes over
						data := snapshotBytesOf(t, m, 64) // several files

						at := m.AppliedIndex()
						m.Close()
						cur = 1 - cur
						other := machine(rt, groups[cur])
						// State the restore must replace (a snapshot older
						// than the applied state is refused: see
						// TestRestoreRefusesStaleSnapshot).
						if next := other.AppliedIndex() + 1; next <= at {
							other.Apply(entry(t, next, genOp(kind).Draw(rt, "junk")))
						}
						if err := other.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
							rt.Fatal(err)
						}
						m = other
					default:
						n := rapid.IntRange(1, 4).Draw(rt, "ops")
						ops := make([]*logpb.Op, n)
						for i := range ops {
							ops[i] = genOp(kind).Draw(rt, "op")
						}
						l := entry(t, uint64(len(logs)+1), ops...)
						logs = append(logs, l)
						rs := results(t, m.Apply(l))
						for i, op := range ops {
							code, rev := md.apply(op)
							if rs[i].Code != code || rs[i].Revision != rev {
								rt.Fatalf("op %v: got %v rev %d, want %v rev %d", op, rs[i].Code, rs[i].Revision, code, rev)
							}
						}
					}
					compare(rt, m, md)
				}
				m.Close()
			})
		})
	}
}

func compare(t *rapid.T, m *Machine, md *model) {
	if m.Revision() != md.rev {
		t.Fatalf("revision: got %d, want %d", m.Revision(), md.rev)
	}
	got := map[string]modelKV{}
	gotOff := map[string]int64{}
	gotRes := map[string]modelKV{}
	err := m.space.Scan(userStart, userEnd, func(k, v []byte) bool {
		switch k[0] {
		case prefixKV:
			kv := &logpb.KV{}
			if err := proto.Unmarshal(v, kv); err != nil {
				t.Fatal(err)
			}
			got[string(k[1:])] = modelKV{value: string(kv.Value), create: kv.CreateRevision, mod: kv.ModRevision, version: kv.Version}
		case prefixResource:
			r := &logpb.Resource{}
			if err := proto.Unmarshal(v, r); err != nil {
				t.Fatal(err)
			}
			gotRes[r.Name] = modelKV{value: string(r.Spec), create: r.CreateRevision, mod: r.ModRevision, version: r.Version}
		case prefixOffset:
			g, tp, p, err := parseOffsetKey(k)
			if err != nil {
				t.Fatal(err)
			}
			o := &logpb.Offset{}
			if err := proto.Unmarshal(v, o); err != nil {
				t.Fatal(err)
			}
			gotOff[fmt.Sprintf("%s/%s/%d", g, tp, p)] = o.Offset
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sortedMap(got)) != fmt.Sprint(sortedMap(md.kv)) {
		t.Fatalf("kv state:\n got %v\nwant %v", got, md.kv)
	}
	if fmt.Sprint(sortedMap(gotOff)) != fmt.Sprint(sortedMap(md.offsets)) {
		t.Fatalf("offset state:\n got %v\nwant %v", gotOff, md.offsets)
	}
	if fmt.Sprint(sortedMap(gotRes)) != fmt.Sprint(sortedMap(md.resources)) {
		t.Fatalf("resource state:\n got %v\nwant %v", gotRes, md.resources)
	}
}

func sortedMap[V any](m map[string]V) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%q=%v", k, v))
	}
	sort.Strings(out)
	return out
}

// --- benchmarks ---

func BenchmarkApplyBatch(b *testing.B) {
	for _, ops := range []int{1, 100} {
		b.Run(fmt.Sprintf("ops=%d", ops), func(b *testing.B) {
			e := newEnv(b, KindData)
			val := bytes.Repeat([]byte("v"), 256)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				batch := &logpb.Batch{Ops: make([]*logpb.Op, ops)}
				for j := range batch.Ops {
					batch.Ops[j] = &logpb.Op{Op: &logpb.Op_Put{Put: &logpb.KVPut{Key: []byte(fmt.Sprintf("key-%012d-%04d", i, j)), Value: val}}}
				}
				data, _ := EncodeBatch(batch)
				e.m.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data})
			}
			b.ReportMetric(float64(b.N*ops)/b.Elapsed().Seconds(), "puts/s")
		})
	}
}

// BenchmarkEventsCompact is what one change-log compaction entry of
// 10,000 revisions (one put each, 256-byte values) costs a replica to
// apply: metanode proposes up to 16 of them per 2.5 s round.
func BenchmarkEventsCompact(b *testing.B) {
	const revs = 10000
	e := newEnv(b, KindData)
	val := bytes.Repeat([]byte("v"), 256)
	index := uint64(0)
	apply := func(ops ...*logpb.Op) {
		data, _ := EncodeBatch(&logpb.Batch{Ops: ops})
		index++
		e.m.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data})
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		for j := range revs / 100 {
			ops := make([]*logpb.Op, 100)
			for k := range ops {
				ops[k] = &logpb.Op{Op: &logpb.Op_Put{Put: &logpb.KVPut{Key: fmt.Appendf(nil, "key-%06d-%04d", j, k), Value: val}}}
			}
			apply(ops...)
		}
		b.StartTimer()
		apply(&logpb.Op{Op: &logpb.Op_EventsCompact{EventsCompact: &logpb.EventsCompact{BelowRevision: e.m.Revision() + 1}}})
	}
	b.ReportMetric(float64(b.N*revs)/b.Elapsed().Seconds(), "revisions/s")
}
