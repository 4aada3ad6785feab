package verify

import (
	"testing"
	"time"
)

// TestScheduleBoundsReshards: each reshard fault adds a group for good, so
// a schedule holds at most MaxReshards of them; the other kinds fill the
// rest, and a schedule of reshard alone stops at the bound.
func TestScheduleBoundsReshards(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		fs := Schedule(seed, []FaultKind{FaultReshard, FaultKill}, 2*time.Minute, ScheduleOptions{})
		counts := map[FaultKind]int{}
		for _, f := range fs {
			counts[f.Kind]++
		}
		if counts[FaultReshard] != 2 || counts[FaultKill] < 5 {
			t.Fatalf("seed %d: got %v, want 2 reshards (the default bound) and kills for the rest", seed, counts)
		}
		only := Schedule(seed, []FaultKind{FaultReshard}, 2*time.Minute, ScheduleOptions{MaxReshards: 3})
		if len(only) != 3 {
			t.Fatalf("seed %d: reshard alone with MaxReshards 3: got %d faults, want 3", seed, len(only))
		}
	}
}
