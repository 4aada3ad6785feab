package ci

import (
	"fmt"
	"testing"

	"github.com/metamq/meta/chaos"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
)

// The state machine decides ownership with its own copy of the route hash
// (sm cannot import rpc); the map that directs clients uses metapb's. They
// must agree on every key, or a group would refuse keys the map sends it.
func TestRouteHashIsTheSameInSmAndMetapb(t *testing.T) {
	keys := [][]byte{nil, {}, {0}, {0xff}, []byte("k48"), []byte("client-ü")}
	for i := range 10000 {
		keys = append(keys, []byte(fmt.Sprintf("key-%d", i)))
	}
	for _, k := range keys {
		if a, b := sm.RouteHash(k), metapb.RouteHash(k); a != b {
			t.Fatalf("key %q: sm %#x, metapb %#x", k, a, b)
		}
	}
}

// The container nemesis skips a disk-full fault on a cluster whose version
// cannot raise the NOSPACE alarm; it keeps its own copy of the level
// (chaos cannot import sm), which must be the state machine's.
func TestChaosAlarmLevelIsTheStateMachines(t *testing.T) {
	want := sm.OpLevel(&logpb.Op{Op: &logpb.Op_AlarmSet{AlarmSet: &logpb.AlarmSet{}}})
	if chaos.AlarmLevel != want {
		t.Fatalf("chaos.AlarmLevel %d, sm's level of AlarmSet %d", chaos.AlarmLevel, want)
	}
}

// Likewise a reshard fault on a cluster whose version cannot split.
func TestChaosSplitLevelIsTheStateMachines(t *testing.T) {
	want := sm.OpLevel(&logpb.Op{Op: &logpb.Op_RangeRelease{RangeRelease: &logpb.RangeRelease{}}})
	if chaos.SplitLevel != want {
		t.Fatalf("chaos.SplitLevel %d, sm's level of RangeRelease %d", chaos.SplitLevel, want)
	}
}
