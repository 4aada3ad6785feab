package verify

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metamq/meta/rpc/metapb"
)

func TestScheduleIsDeterministic(t *testing.T) {
	opts := ScheduleOptions{CrashPoints: []string{"after-append", "before-apply"}}
	for _, seed := range []int64{1, 2, 42, -7} {
		a := Schedule(seed, AllFaultKinds, 2*time.Minute, opts)
		b := Schedule(seed, AllFaultKinds, 2*time.Minute, opts)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("seed %d: got two different schedules:\n%v\n%v", seed, a, b)
		}
	}
	if reflect.DeepEqual(Schedule(1, AllFaultKinds, time.Minute, opts), Schedule(2, AllFaultKinds, time.Minute, opts)) {
		t.Fatal("seeds 1 and 2: got the same schedule, want different ones")
	}
}

func TestScheduleShape(t *testing.T) {
	tests := []struct {
		name  string
		kinds []FaultKind
		total time.Duration
		opts  ScheduleOptions
	}{
		{"every kind in three minutes", AllFaultKinds, 3 * time.Minute, ScheduleOptions{}},
		{"short run", []FaultKind{FaultKill, FaultPause}, 12 * time.Second, ScheduleOptions{}},
		{"tight options", []FaultKind{FaultIsolate}, 3 * time.Second, ScheduleOptions{
			Warmup: 300 * time.Millisecond, Cooldown: 300 * time.Millisecond,
			MinFault: 400 * time.Millisecond, MaxFault: 500 * time.Millisecond,
			MinGap: 100 * time.Millisecond, MaxGap: 200 * time.Millisecond}},
		{"capped", AllFaultKinds, time.Hour, ScheduleOptions{MaxFaults: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			faults := Schedule(9, tt.kinds, tt.total, tt.opts)
			o := tt.opts.withDefaults(tt.total)
			if len(faults) == 0 {
				t.Fatal("got no faults, want some")
			}
			if tt.opts.MaxFaults > 0 && len(faults) > tt.opts.MaxFaults {
				t.Fatalf("got %d faults, want at most %d", len(faults), tt.opts.MaxFaults)
			}
			var end time.Duration
			for i, f := range faults {
				if f.ID != i+1 {
					t.Errorf("fault %d: got id %d, want %d", i, f.ID, i+1)
				}
				if f.Start < o.Warmup || f.Start+f.Duration > tt.total-o.Cooldown {
					t.Errorf("fault %s: got window outside [%s, %s]", f.String(), o.Warmup, tt.total-o.Cooldown)
				}
				if f.Start < end+o.MinGap && i > 0 {
					t.Errorf("fault %s: got start %s, want after the previous end %s plus a gap", f.String(), f.Start, end)
				}
				if f.Duration < o.MinFault || f.Duration > o.MaxFault {
					t.Errorf("fault %s: got duration %s, want within [%s, %s]", f.String(), f.Duration, o.MinFault, o.MaxFault)
				}
				if !slices.Contains(tt.kinds, f.Kind) {
					t.Errorf("fault %s: got kind %s, want one of %v", f.String(), f.Kind, tt.kinds)
				}
				if _, _, err := f.Target.Parse(); err != nil {
					t.Errorf("fault %s: %v", f.String(), err)
				}
				end = f.Start + f.Duration
			}
			if len(faults) >= len(tt.kinds) {
				for _, k := range tt.kinds {
					if !slices.ContainsFunc(faults, func(f Fault) bool { return f.Kind == k }) {
						t.Errorf("kind %s: got no fault of it in %d faults, want every kind", k, len(faults))
					}
				}
			}
		})
	}
	if got := Schedule(1, nil, time.Minute, ScheduleOptions{}); got != nil {
		t.Errorf("no kinds: got %v, want no faults", got)
	}
}

func TestParseKinds(t *testing.T) {
	tests := []struct {
		in      string
		want    []FaultKind
		wantErr bool
	}{
		{"kill,pause", []FaultKind{FaultKill, FaultPause}, false},
		{"partition", []FaultKind{FaultIsolate, FaultSplit, FaultBridge, FaultOneWay}, false},
		{"kill, kill ,isolate,partition", []FaultKind{FaultKill, FaultIsolate, FaultSplit, FaultBridge, FaultOneWay}, false},
		{"all", AllFaultKinds, false},
		{"", nil, false},
		{"kill,meteor", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseKinds(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrBadKind) {
				t.Errorf("%q: got error %v, want ErrBadKind", tt.in, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("%q: got %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestTargetParse(t *testing.T) {
	tests := []struct {
		t           Target
		role, group string
		ok          bool
	}{
		{LeaderOf("data-1"), "leader", "data-1", true},
		{FollowerOf("metadata-0"), "follower", "metadata-0", true},
		{TargetRandom, "random", "", true},
		{TargetAll, "all", "", true},
		{"leader:", "", "", false},
		{"boss:data-0", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		role, group, err := tt.t.Parse()
		if tt.ok != (err == nil) || role != tt.role || group != tt.group {
			t.Errorf("%q: got %q %q %v, want %q %q ok=%t", tt.t, role, group, err, tt.role, tt.group, tt.ok)
		}
		if !tt.ok && !errors.Is(err, ErrBadTarget) {
			t.Errorf("%q: got %v, want ErrBadTarget", tt.t, err)
		}
	}
}

func TestBindAndCutLinks(t *testing.T) {
	three := []string{"n1", "n2", "n3"}
	five := []string{"n1", "n2", "n3", "n4", "n5"}
	tests := []struct {
		name       string
		f          Fault
		candidates []string
		all        []string
		nodes      []string
		links      []Link
	}{
		{"isolate leader", Fault{Kind: FaultIsolate, Target: LeaderOf("data-0")}, []string{"n2"}, three,
			[]string{"n2"}, []Link{{"n1", "n2"}, {"n2", "n1"}, {"n2", "n3"}, {"n3", "n2"}}},
		{"kill follower by pick", Fault{Kind: FaultKill, Target: FollowerOf("data-0"), Pick: 3}, []string{"n1", "n3"}, three,
			[]string{"n3"}, nil},
		{"kill-all", Fault{Kind: FaultKillAll, Target: TargetAll}, nil, three, three, nil},
		{"split 3", Fault{Kind: FaultSplit, Target: LeaderOf("data-0")}, []string{"n3"}, three,
			[]string{"n3"}, []Link{{"n1", "n3"}, {"n2", "n3"}, {"n3", "n1"}, {"n3", "n2"}}},
		{"split 5 wraps", Fault{Kind: FaultSplit, Target: LeaderOf("data-0")}, []string{"n5"}, five,
			[]string{"n1", "n5"}, []Link{
				{"n1", "n2"}, {"n1", "n3"}, {"n1", "n4"}, {"n2", "n1"}, {"n2", "n5"}, {"n3", "n1"}, {"n3", "n5"},
				{"n4", "n1"}, {"n4", "n5"}, {"n5", "n2"}, {"n5", "n3"}, {"n5", "n4"}}},
		{"bridge 5", Fault{Kind: FaultBridge, Target: LeaderOf("data-0")}, []string{"n3"}, five,
			[]string{"n3"}, []Link{
				{"n1", "n4"}, {"n1", "n5"}, {"n2", "n4"}, {"n2", "n5"},
				{"n4", "n1"}, {"n4", "n2"}, {"n5", "n1"}, {"n5", "n2"}}},
		{"oneway in", Fault{Kind: FaultOneWay, Target: TargetRandom, Pick: 0, Params: map[string]string{"dir": "in"}}, three, three,
			[]string{"n1"}, []Link{{"n2", "n1"}, {"n3", "n1"}}},
		{"oneway out", Fault{Kind: FaultOneWay, Target: TargetRandom, Pick: 1, Params: map[string]string{"dir": "out"}}, three, three,
			[]string{"n2"}, []Link{{"n2", "n1"}, {"n2", "n3"}}},
		{"pause cuts nothing", Fault{Kind: FaultPause, Target: TargetRandom, Pick: 2}, three, three, []string{"n3"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.f
			if err := f.Bind(tt.candidates, tt.all); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(f.Nodes, tt.nodes) {
				t.Errorf("nodes: got %v, want %v", f.Nodes, tt.nodes)
			}
			if got := f.CutLinks(tt.all); !slices.Equal(got, tt.links) {
				t.Errorf("links: got %v, want %v", got, tt.links)
			}
		})
	}
	f := Fault{Kind: FaultKill, Target: LeaderOf("data-0")}
	if err := f.Bind(nil, three); err == nil {
		t.Error("bind without candidates: got no error, want one")
	}
}

// statuses is a StatusReader answering canned views, by endpoint.
type statuses map[string]*metapb.StatusResponse

func (s statuses) Status(ctx context.Context, ep string) (*metapb.StatusResponse, error) {
	st, ok := s[ep]
	if !ok {
		return nil, fmt.Errorf("%s: unreachable", ep)
	}
	return st, nil
}

func view(node string, groups ...*metapb.GroupStatus) *metapb.StatusResponse {
	return &metapb.StatusResponse{NodeId: node, Groups: groups}
}

// config is a group configuration: voters, and non-voters marked "~n".
func config(ids ...string) []*metapb.Member {
	var out []*metapb.Member
	for _, id := range ids {
		voter := !strings.HasPrefix(id, "~")
		id = strings.TrimPrefix(id, "~")
		out = append(out, &metapb.Member{Id: id, Addr: id + ":7000", Voter: voter})
	}
	return out
}

func TestResolveTarget(t *testing.T) {
	eps := map[string]string{"n1": "e1", "n2": "e2", "n3": "e3"}
	three := config("n1", "n2", "n3")
	lead := func(term uint64) *metapb.GroupStatus {
		return &metapb.GroupStatus{Group: "data-0", State: "Leader", Term: term, Members: three}
	}
	follow := &metapb.GroupStatus{Group: "data-0", State: "Follower", Term: 5, Members: three}
	sr := statuses{
		"e1": view("n1", lead(4)), // deposed, has not noticed yet
		"e2": view("n2", lead(5)),
		"e3": view("n3", follow),
	}
	tests := []struct {
		target Target
		sr     StatusReader
		want   []string
		err    error
	}{
		{LeaderOf("data-0"), sr, []string{"n2"}, nil},
		{FollowerOf("data-0"), sr, []string{"n1", "n3"}, nil},
		{TargetRandom, sr, []string{"n1", "n2", "n3"}, nil},
		{TargetAll, sr, []string{"n1", "n2", "n3"}, nil},
		{LeaderOf("data-1"), sr, nil, ErrNoLeader},
		{LeaderOf("data-0"), statuses{"e3": view("n3", follow)}, nil, ErrNoLeader},
		{"nobody", sr, nil, ErrBadTarget},
	}
	for _, tt := range tests {
		got, err := ResolveTarget(context.Background(), tt.sr, eps, tt.target)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("%s: got %v, want %v", tt.target, err, tt.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v, %v; want %v", tt.target, got, err, tt.want)
		}
	}
}

// TestResolveTargetFollowsPlacement: on a cluster whose replication
// factor is below its node count, the followers of a group are the other
// voters of its leader's configuration, not every node but the leader.
func TestResolveTargetFollowsPlacement(t *testing.T) {
	eps := map[string]string{"n1": "e1", "n2": "e2", "n3": "e3", "n4": "e4", "n5": "e5"}
	group := func(state string, term uint64, members []*metapb.Member) *metapb.GroupStatus {
		return &metapb.GroupStatus{Group: "data-0", State: state, Term: term, Members: members}
	}
	// data-0 on n2, n4, n5 (RF 3 on 5 nodes), led by n4; n1 and n3 hold
	// none and do not report it. n5 knows an older configuration.
	rf3 := statuses{
		"e1": view("n1"),
		"e2": view("n2", group("Follower", 7, config("n2", "n4", "n5"))),
		"e3": view("n3"),
		"e4": view("n4", group("Leader", 7, config("n2", "n4", "n5"))),
		"e5": view("n5", group("Follower", 7, config("n1", "n4", "n5"))),
	}
	tests := []struct {
		name   string
		target Target
		sr     StatusReader
		want   []string
		err    error
	}{
		{"leader", LeaderOf("data-0"), rf3, []string{"n4"}, nil},
		{"followers are the leader's other voters", FollowerOf("data-0"), rf3, []string{"n2", "n5"}, nil},
		{"random is still every node", TargetRandom, rf3, []string{"n1", "n2", "n3", "n4", "n5"}, nil},
		{"a non-voter catching up is no follower", FollowerOf("data-0"), statuses{
			"e4": view("n4", group("Leader", 7, config("n2", "n4", "~n3"))),
		}, []string{"n2"}, nil},
		{"the highest term's configuration counts", FollowerOf("data-0"), statuses{
			"e1": view("n1", group("Leader", 6, config("n1", "n3", "n4"))), // deposed
			"e4": view("n4", group("Leader", 7, config("n2", "n4", "n5"))),
		}, []string{"n2", "n5"}, nil},
		{"a voter outside the cluster's nodes is no candidate", FollowerOf("data-0"), statuses{
			"e4": view("n4", group("Leader", 7, config("n4", "n5", "s6"))),
		}, []string{"n5"}, nil},
		{"no leader", FollowerOf("data-0"), statuses{
			"e2": view("n2", group("Follower", 7, config("n2", "n4", "n5"))),
		}, nil, ErrNoLeader},
		{"no other voter", FollowerOf("data-0"), statuses{
			"e4": view("n4", group("Leader", 7, config("n4", "~n2"))),
		}, nil, ErrNoFollower},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveTarget(context.Background(), tt.sr, eps, tt.target)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Errorf("got %v, %v; want %v", got, err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestFaultsRoundTrip(t *testing.T) {
	faults := Schedule(5, AllFaultKinds, time.Minute, ScheduleOptions{})
	faults[0].Nodes = []string{"n1"}
	faults[0].Began, faults[0].Ended, faults[0].Err = time.Second, 3*time.Second, "inject: nope"
	path := t.TempDir() + "/faults.jsonl"
	if err := SaveFaults(path, faults); err != nil {
		t.Fatal(err)
	}
	back, err := LoadFaults(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, faults) {
		t.Fatalf("got %+v, want %+v", back, faults)
	}
}
