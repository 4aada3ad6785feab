package sm

import (
	"testing"

	"github.com/metamq/meta/sm/logpb"
)

// Every operation of the log format has a feature level: a new one
// without an entry in opLevels fails here, so that whoever adds it decides
// which release it needs (and the cluster version gates it).
func TestEveryOpHasALevel(t *testing.T) {
	fields := (&logpb.Op{}).ProtoReflect().Descriptor().Oneofs().ByName("op").Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		l, ok := opLevels[f.Number()]
		if !ok {
			t.Errorf("operation %s (%d) has no feature level in opLevels", f.Name(), f.Number())
			continue
		}
		if l < BaseLevel || l > FeatureLevel {
			t.Errorf("operation %s: level %d outside %d..%d", f.Name(), l, BaseLevel, FeatureLevel)
		}
	}
	for n := range opLevels {
		if fields.ByNumber(n) == nil {
			t.Errorf("opLevels lists %d, which is no operation", n)
		}
	}
	for _, tc := range []struct {
		op   *logpb.Op
		want uint32
	}{
		{&logpb.Op{Op: &logpb.Op_Put{Put: &logpb.KVPut{}}}, 1},
		{&logpb.Op{Op: &logpb.Op_GroupPut{GroupPut: &logpb.GroupPut{}}}, 1},
		{&logpb.Op{Op: &logpb.Op_KvPuts{KvPuts: &logpb.KVPuts{}}}, 2},
		{&logpb.Op{Op: &logpb.Op_KvTxn{KvTxn: &logpb.KVTxn{}}}, 2},
		{&logpb.Op{Op: &logpb.Op_HashCheck{HashCheck: &logpb.HashCheck{}}}, 2},
		{&logpb.Op{Op: &logpb.Op_ClusterVersionSet{ClusterVersionSet: &logpb.ClusterVersionSet{}}}, 2},
	} {
		if got := OpLevel(tc.op); got != tc.want {
			t.Errorf("OpLevel(%s) = %d, want %d", OpName(tc.op), got, tc.want)
		}
	}
}

// The cluster version starts at the base level, rises through
// ClusterVersionSet (raising the directory version, which nodes follow),
// and never goes down.
func TestClusterVersionOnlyRises(t *testing.T) {
	e := newEnv(t, KindMetadata)
	apply := e.applyNext()
	level := func() (uint32, uint64) {
		t.Helper()
		d, err := e.m.Directory()
		if err != nil {
			t.Fatal(err)
		}
		return d.Level(), d.Version
	}
	if l, _ := level(); l != BaseLevel {
		t.Fatalf("fresh cluster version %d, want %d", l, BaseLevel)
	}
	set := func(l uint32) *logpb.Result {
		return apply(&logpb.Op{Op: &logpb.Op_ClusterVersionSet{ClusterVersionSet: &logpb.ClusterVersionSet{Level: l}}})[0]
	}
	if r := set(0); r.Code != logpb.Code_CODE_INVALID {
		t.Fatalf("level 0: got %v, want invalid", r)
	}
	_, v0 := level()
	if r := set(2); r.Code != logpb.Code_CODE_OK {
		t.Fatalf("raise to 2: %v", r)
	}
	l, v1 := level()
	if l != 2 || v1 <= v0 {
		t.Fatalf("after raise: level %d directory version %d (was %d), want 2 and higher", l, v1, v0)
	}
	for _, lower := range []uint32{1, 2} {
		if r := set(lower); r.Code != logpb.Code_CODE_OK {
			t.Fatalf("set %d: %v", lower, r)
		}
		if l, v := level(); l != 2 || v != v1 {
			t.Fatalf("after set %d: level %d directory version %d, want 2 and %d", lower, l, v, v1)
		}
	}
}
