package controller

import (
	"testing"
	"time"

	"github.com/metamq/meta/sm/logpb"
)

func splitGroup(name, kind string, bytes uint64, rate float64) GroupView {
	rec := &logpb.GroupRecord{Name: name, Kind: kind, State: logpb.GroupState_GROUP_STATE_ACTIVE,
		Ranges: []*logpb.HashRange{{Lo: 0, Hi: 1 << 32, Version: 1}}}
	return GroupView{Record: rec, Known: true, Bytes: bytes, EntriesPerSec: rate}
}

func TestPlanSplit(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	pol := SplitPolicy{Bytes: 100, EntriesPerSec: 50, LoadFor: 10 * time.Second, MaxGroups: 4}
	type step struct {
		at     time.Duration // after t0
		groups []GroupView
		want   string // group, or ""
		reason string
	}
	withSplit := splitGroup("data-0", "data", 500, 0)
	withSplit.Record.Split = &logpb.Split{Child: "data-9"}
	creating := splitGroup("data-1", "data", 500, 0)
	creating.Record.State = logpb.GroupState_GROUP_STATE_CREATING
	noRanges := splitGroup("data-2", "data", 500, 0)
	noRanges.Record.Ranges = nil
	unknown := splitGroup("data-3", "data", 0, 500)
	unknown.Known = false
	for _, tc := range []struct {
		name  string
		pol   SplitPolicy
		cool  map[string]time.Time
		steps []step
	}{
		{name: "the largest group over the size splits", pol: pol, steps: []step{
			{groups: []GroupView{splitGroup("data-0", "data", 90, 0), splitGroup("data-1", "data", 300, 0), splitGroup("offset-0", "offset", 200, 0)}, want: "data-1", reason: "size"},
		}},
		{name: "none over the size", pol: pol, steps: []step{
			{groups: []GroupView{splitGroup("data-0", "data", 100, 0), splitGroup("offset-0", "offset", 99, 0)}},
		}},
		{name: "metadata groups never split", pol: pol, steps: []step{
			{groups: []GroupView{splitGroup("metadata-0", "metadata", 1000, 1000)}},
		}},
		{name: "one split at a time", pol: pol, steps: []step{
			{groups: []GroupView{withSplit, splitGroup("data-1", "data", 900, 0)}},
		}},
		{name: "creating, rangeless or cooling groups wait", pol: pol, cool: map[string]time.Time{"data-4": t0.Add(time.Minute)}, steps: []step{
			{groups: []GroupView{creating, noRanges, splitGroup("data-4", "data", 900, 0)}},
			{at: time.Minute, groups: []GroupView{creating, noRanges, splitGroup("data-4", "data", 900, 0)}, want: "data-4", reason: "size"},
		}},
		{name: "no kind grows past MaxGroups", pol: pol, steps: []step{
			{groups: []GroupView{splitGroup("data-0", "data", 900, 0), splitGroup("data-1", "data", 0, 0), splitGroup("data-2", "data", 0, 0), splitGroup("data-3", "data", 0, 0), splitGroup("offset-0", "offset", 200, 0)}, want: "offset-0", reason: "size"},
		}},
		{name: "load splits only after LoadFor above the rate without a break", pol: pol, steps: []step{
			{groups: []GroupView{splitGroup("data-0", "data", 0, 60)}},
			{at: 5 * time.Second, groups: []GroupView{splitGroup("data-0", "data", 0, 40)}}, // a dip starts it over
			{at: 6 * time.Second, groups: []GroupView{splitGroup("data-0", "data", 0, 60)}},
			{at: 15 * time.Second, groups: []GroupView{splitGroup("data-0", "data", 0, 60)}},
			{at: 16 * time.Second, groups: []GroupView{splitGroup("data-0", "data", 0, 60)}, want: "data-0", reason: "load"},
		}},
		{name: "a rate with no leader's report is not load", pol: pol, steps: []step{
			{groups: []GroupView{unknown}},
			{at: time.Minute, groups: []GroupView{unknown}},
		}},
		{name: "size before load", pol: pol, steps: []step{
			{groups: []GroupView{splitGroup("data-0", "data", 0, 60), splitGroup("data-1", "data", 101, 0)}, want: "data-1", reason: "size"},
			{at: 20 * time.Second, groups: []GroupView{splitGroup("data-0", "data", 0, 60), splitGroup("data-1", "data", 101, 0)}, want: "data-1", reason: "size"},
		}},
		{name: "load off", pol: SplitPolicy{Bytes: 100, MaxGroups: 4}, steps: []step{
			{groups: []GroupView{splitGroup("data-0", "data", 0, 1e6)}},
			{at: time.Hour, groups: []GroupView{splitGroup("data-0", "data", 0, 1e6)}},
		}},
		{name: "size off", pol: SplitPolicy{EntriesPerSec: 50, LoadFor: time.Second, MaxGroups: 4}, steps: []step{
			{groups: []GroupView{splitGroup("data-0", "data", 1<<40, 0)}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hot := map[string]time.Time{}
			cool := tc.cool
			if cool == nil {
				cool = map[string]time.Time{}
			}
			for i, s := range tc.steps {
				got, reason := PlanSplit(tc.pol, s.groups, hot, cool, t0.Add(s.at))
				if got != s.want || reason != s.reason {
					t.Fatalf("step %d (at %s): PlanSplit = %q %q, want %q %q", i, s.at, got, reason, s.want, s.reason)
				}
			}
		})
	}
}

func TestSplitConfigValidate(t *testing.T) {
	c := DefaultConfig()
	c.SplitMaxGroups = 1
	if c.Validate() == nil {
		t.Fatal("SplitMaxGroups 1 with splits by size on: no error")
	}
	c.SplitBytes = 0
	if err := c.Validate(); err != nil {
		t.Fatalf("SplitMaxGroups 1 with automatic splits off: %v", err)
	}
	c = DefaultConfig()
	c.SplitEntriesPerSec = -1
	if c.Validate() == nil {
		t.Fatal("a negative SplitEntriesPerSec: no error")
	}
}
