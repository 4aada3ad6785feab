package chaos

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify"
	"github.com/metamq/meta/verify/poll"
)

// fakeContainers records what the nemesis asks of the cluster.
type fakeContainers struct {
	mu      sync.Mutex
	calls   []string
	running map[string]bool
	paused  map[string]bool
	args    map[string][]string
	failOn  string // a call prefix that fails
	dir     string // holds the nodes' data directories and logs
}

func newFakeContainers(nodes ...string) *fakeContainers {
	f := &fakeContainers{running: map[string]bool{}, paused: map[string]bool{}, args: map[string][]string{}}
	for _, n := range nodes {
		f.running[n] = true
	}
	return f
}

func (f *fakeContainers) record(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := fmt.Sprintf(format, args...)
	f.calls = append(f.calls, c)
	if f.failOn != "" && strings.HasPrefix(c, f.failOn) {
		return errors.New("fake failure")
	}
	return nil
}

func (f *fakeContainers) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.calls)
	f.calls = nil
	return out
}

func (f *fakeContainers) set(m map[string]bool, n string, v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m[n] = v
}

func (f *fakeContainers) Kill(_ context.Context, n string) error {
	f.set(f.running, n, false)
	return f.record("kill %s", n)
}

func (f *fakeContainers) Start(_ context.Context, n string) error {
	f.set(f.running, n, true)
	return f.record("start %s", n)
}

func (f *fakeContainers) Pause(_ context.Context, n string) error {
	f.set(f.paused, n, true)
	return f.record("pause %s", n)
}

func (f *fakeContainers) Unpause(_ context.Context, n string) error {
	f.set(f.paused, n, false)
	return f.record("unpause %s", n)
}

func (f *fakeContainers) State(_ context.Context, n string) (NodeState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return NodeState{Running: f.running[n], Paused: f.paused[n]}, nil
}

func (f *fakeContainers) Wipe(_ context.Context, n string) error { return f.record("wipe %s", n) }

func (f *fakeContainers) Recreate(_ context.Context, n string, args []string) error {
	f.mu.Lock()
	f.args[n] = args
	f.mu.Unlock()
	return f.record("recreate %s %s", n, strings.Join(args, " "))
}

func (f *fakeContainers) DropLinks(_ context.Context, links []Link) error {
	var s []string
	for _, l := range links {
		s = append(s, l.From+">"+l.To)
	}
	return f.record("drop %s", strings.Join(s, " "))
}

func (f *fakeContainers) HealPartitions(context.Context) error { return f.record("heal-partitions") }

func (f *fakeContainers) DegradeNodes(_ context.Context, ns []string, d, j time.Duration, p float64) error {
	return f.record("degrade %s %s %s %.2f", strings.Join(ns, ","), d, j, p)
}

func (f *fakeContainers) HealNetwork(context.Context) error { return f.record("heal-network") }

func (f *fakeContainers) Stop(_ context.Context, n string) error {
	f.set(f.running, n, false)
	return f.record("stop %s", n)
}

// DataDir and LogPath are under the dir a test sets (empty: none).
func (f *fakeContainers) DataDir(n string) (string, error) {
	return filepath.Join(f.dir, "data", n), nil
}
func (f *fakeContainers) LogPath(n string) (string, error) {
	return filepath.Join(f.dir, n+".log"), nil
}

func (f *fakeContainers) Args(n string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.args[n]), nil
}

func (f *fakeContainers) PeerAddr(n string) (string, error) { return n + ":7000", nil }

// fakeAdmin is a cluster as the public client sees it: a member list,
// every group on every member (rf 0) or on rf of them, led by the first
// of its replicas, every replica a voter.
type fakeAdmin struct {
	mu        sync.Mutex
	members   []string
	groups    []string
	rf        int // 0: every member holds every group
	calls     []string
	transfers int
	targets   map[string][]string // group → the nodes transfers named
	learner   map[string]string   // group → a replica its leader's configuration has as a non-voter
	writes    map[string]int
	failWrite map[string]bool // groups whose writes fail
	snapIndex uint64          // leaders' last snapshot index
	drained   map[string]bool
	moved     map[string][2]string // group → the node that gave its replica, and the one that took it
	noSpace   string               // the member whose NOSPACE alarm is raised: writes are refused
	// levels, when set, gives each node's feature level and the cluster
	// version the Status answers carry.
	levels func(node string) (level, version uint32)
	// kvs are the keys List answers; ranges each data group's ranges
	// (set by newFakeAdmin, changed by SplitGroup).
	kvs    []*metapb.KeyValue
	ranges map[string][]*metapb.KeyRange
}

func newFakeAdmin(members ...string) *fakeAdmin {
	a := &fakeAdmin{members: members, groups: metapb.Groups(2, 2), writes: map[string]int{}, failWrite: map[string]bool{},
		drained: map[string]bool{}, moved: map[string][2]string{}, targets: map[string][]string{}, learner: map[string]string{},
		ranges: map[string][]*metapb.KeyRange{}}
	for _, r := range metapb.EvenRanges(2, metapb.DataGroup) {
		a.ranges[r.Group] = append(a.ranges[r.Group], &metapb.KeyRange{Lo: r.Lo, Hi: r.Hi, Version: r.Version})
	}
	return a
}

// List answers the keys in kvs, in one page.
func (a *fakeAdmin) List(context.Context, *metapb.ListRequest) (*metapb.ListResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return &metapb.ListResponse{Kvs: slices.Clone(a.kvs)}, nil
}

// SplitGroup splits at once: the new group takes [at, hi) of the range
// holding at.
func (a *fakeAdmin) SplitGroup(_ context.Context, group string, at uint64) (*metapb.SplitGroupResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, fmt.Sprintf("split %s at %#x", group, at))
	for _, r := range a.ranges[group] {
		if r.Lo < at && at < r.Hi {
			child := metapb.DataGroup(len(a.ranges))
			take := &metapb.KeyRange{Lo: at, Hi: r.Hi, Version: r.Version + 1}
			r.Hi, r.Version = at, r.Version+1
			a.ranges[child] = []*metapb.KeyRange{take}
			a.groups = append(a.groups, child)
			return &metapb.SplitGroupResponse{Child: child, Range: take}, nil
		}
	}
	return nil, fmt.Errorf("fake: %s owns no range cutting at %#x", group, at)
}

func (a *fakeAdmin) Calls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := slices.Clone(a.calls)
	a.calls = nil
	return out
}

// Status reports the groups node holds, the first replica leading each;
// their configuration is the group's replicas.
func (a *fakeAdmin) Status(_ context.Context, ep string) (*metapb.StatusResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	node := strings.TrimPrefix(ep, "ep-")
	st := &metapb.StatusResponse{NodeId: node, OffsetGroups: 2, DataGroups: 2}
	if a.levels != nil {
		st.FeatureLevel, st.ClusterVersion = a.levels(node)
	}
	for _, g := range a.groups {
		replicas := a.replicas(g)
		if !slices.Contains(replicas, node) {
			continue
		}
		gs := &metapb.GroupStatus{Group: g, State: "Follower", Term: 3, LeaderId: replicas[0], CommitIndex: 100, AppliedIndex: 100,
			LastLogIndex: 100, LastSnapshotIndex: a.snapIndex}
		if node == replicas[0] {
			gs.State = "Leader"
		}
		for _, m := range replicas {
			gs.Members = append(gs.Members, &metapb.Member{Id: m, Addr: m + ":7000", Voter: a.learner[g] != m})
		}
		st.Groups = append(st.Groups, gs)
	}
	return st, nil
}

func (a *fakeAdmin) Members(context.Context) (*metapb.MembersResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.writes[metapb.MetadataGroup]++
	if a.failWrite[metapb.MetadataGroup] {
		return nil, errors.New("no leader")
	}
	res := &metapb.MembersResponse{}
	for _, m := range a.members {
		res.Members = append(res.Members, &metapb.Member{Id: m, Addr: m + ":7000", Voter: true})
	}
	return res, nil
}

func (a *fakeAdmin) AddMember(_ context.Context, id, addr string) (*metapb.AddMemberResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, "add "+id+" "+addr)
	a.members = append(a.members, id)
	slices.Sort(a.members)
	return &metapb.AddMemberResponse{}, nil
}

// RemoveMember refuses a member that is not drained, as the controller
// refuses a live node that still holds replicas.
func (a *fakeAdmin) RemoveMember(_ context.Context, id string) (*metapb.RemoveMemberResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, "remove "+id)
	if !a.drained[id] {
		return nil, fmt.Errorf("%s is alive and still holds replicas: drain it first", id)
	}
	a.members = slices.DeleteFunc(a.members, func(m string) bool { return m == id })
	delete(a.drained, id)
	return &metapb.RemoveMemberResponse{}, nil
}

func (a *fakeAdmin) ForceRemoveMember(_ context.Context, id string) (*metapb.RemoveMemberResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, "remove --force "+id)
	a.members = slices.DeleteFunc(a.members, func(m string) bool { return m == id })
	delete(a.drained, id)
	return &metapb.RemoveMemberResponse{}, nil
}

// DrainMember drains id at once.
func (a *fakeAdmin) DrainMember(_ context.Context, id string, undo bool) (*metapb.DrainMemberResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, "drain "+id)
	a.drained[id] = !undo
	return &metapb.DrainMemberResponse{}, nil
}

func (a *fakeAdmin) ListNodes(context.Context) (*metapb.ListNodesResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	res := &metapb.ListNodesResponse{}
	for _, m := range a.members {
		st := "active"
		if a.drained[m] {
			st = "drained"
		}
		n := &metapb.NodeInfo{Id: m, Addr: m + ":7000", Alive: true, State: st}
		for _, g := range a.groups {
			if a.holds(g, m) {
				n.Replicas++
			}
		}
		res.Nodes = append(res.Nodes, n)
	}
	return res, nil
}

// holds says whether member m holds a replica of group g: every member
// (rf 0) or rf of them (the i-th group on the i-th member of the cluster
// and the ones after it, wrapping around), but for moved replicas and
// spares (which hold only what was moved to them). The caller holds a.mu.
func (a *fakeAdmin) holds(g, m string) bool {
	switch mv := a.moved[g]; m {
	case mv[0]:
		return false
	case mv[1]:
		return true
	}
	if slices.Contains(a.spares(), m) {
		return false
	}
	if a.rf == 0 {
		return true
	}
	base := slices.DeleteFunc(slices.Clone(a.members), func(x string) bool { return slices.Contains(a.spares(), x) })
	i, j := slices.Index(a.groups, g), slices.Index(base, m)
	return (j-i%len(base)+len(base))%len(base) < a.rf
}

// replicas returns the members holding g, sorted. The caller holds a.mu.
func (a *fakeAdmin) replicas(g string) []string {
	var out []string
	for _, m := range a.members {
		if a.holds(g, m) {
			out = append(out, m)
		}
	}
	return out
}

// ListGroups places the groups as holds says. The replication factor is
// rf, or (rf 0) the number of the cluster's members.
func (a *fakeAdmin) ListGroups(context.Context) (*metapb.ListGroupsResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rf := uint32(a.rf)
	if rf == 0 {
		rf = uint32(len(a.members) - len(a.spares()))
	}
	res := &metapb.ListGroupsResponse{ReplicationFactor: rf, MetadataReplicationFactor: rf}
	for _, g := range a.groups {
		replicas := a.replicas(g)
		kind, _ := metapb.GroupKind(g)
		gi := &metapb.GroupInfo{Group: g, Kind: kind, State: "active", Ranges: a.ranges[g]}
		if len(replicas) > 0 {
			gi.Leader = replicas[0]
		}
		for _, m := range replicas {
			gi.Replicas = append(gi.Replicas, &metapb.ReplicaInfo{Node: m, Voter: true, Role: "voter"})
		}
		res.Groups = append(res.Groups, gi)
	}
	return res, nil
}

// spares are the members whose names do not start with "n" (a spare
// holds only what was moved to it).
func (a *fakeAdmin) spares() []string {
	var out []string
	for _, m := range a.members {
		if !strings.HasPrefix(m, "n") {
			out = append(out, m)
		}
	}
	return out
}

func (a *fakeAdmin) MoveReplica(_ context.Context, group, from, to string) (*metapb.MoveReplicaResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, "move "+group+" "+from+" "+to)
	a.moved[group] = [2]string{from, to}
	return &metapb.MoveReplicaResponse{ConfVer: 2}, nil
}

func (a *fakeAdmin) TransferLeader(_ context.Context, group, target string) (*metapb.TransferLeaderResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.transfers++
	if target != "" {
		a.targets[group] = append(a.targets[group], target)
	}
	return &metapb.TransferLeaderResponse{}, nil
}

func (a *fakeAdmin) write(g string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.writes[g]++
	if a.failWrite[g] {
		return errors.New("unavailable")
	}
	return nil
}

func (a *fakeAdmin) Put(_ context.Context, req *metapb.PutRequest) (*metapb.PutResponse, error) {
	a.mu.Lock()
	full := a.noSpace
	a.mu.Unlock()
	if full != "" {
		return nil, noSpaceErr(full)
	}
	if err := a.write(metapb.DataGroupFor(req.Key, 2)); err != nil {
		return nil, err
	}
	return &metapb.PutResponse{}, nil
}

// Alarms lists a NOSPACE alarm of the member in a.noSpace, if any.
func (a *fakeAdmin) Alarms(context.Context) (*metapb.AlarmsResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.noSpace == "" {
		return &metapb.AlarmsResponse{}, nil
	}
	return &metapb.AlarmsResponse{Alarms: []*metapb.Alarm{{Alarm: "NOSPACE", Member: a.noSpace}}}, nil
}

func (a *fakeAdmin) DisarmAlarm(context.Context, string, string) (*metapb.AlarmsResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, "disarm")
	a.noSpace = ""
	return &metapb.AlarmsResponse{}, nil
}

func (a *fakeAdmin) CommitOffsets(_ context.Context, req *metapb.CommitOffsetsRequest) (*metapb.CommitOffsetsResponse, error) {
	if err := a.write(metapb.OffsetGroupFor(req.Offsets[0].Group, 2)); err != nil {
		return nil, err
	}
	return &metapb.CommitOffsetsResponse{}, nil
}

func fakeNemesis(t *testing.T, spares ...string) (*Nemesis, *fakeContainers, *fakeAdmin) {
	t.Helper()
	return fakeNemesisRF(t, 3, 0, spares...)
}

// fakeNemesisRF is a nemesis over a fake cluster of n nodes whose groups
// have rf replicas each (0: every node holds every group).
func fakeNemesisRF(t *testing.T, n, rf int, spares ...string) (*Nemesis, *fakeContainers, *fakeAdmin) {
	t.Helper()
	nodes := NodeNames(n)
	fc := newFakeContainers(nodes...)
	fa := newFakeAdmin(nodes...)
	fa.rf = rf
	eps := map[string]string{}
	for _, n := range nodes {
		eps[n] = "ep-" + n
	}
	m := newNemesis(fc, fa, NemesisConfig{
		Endpoints: eps, Spares: spares, TrailingLogs: 10, LagCatchUp: time.Second,
		JoinArgs: func(n string) []string { return []string{"--id", n, "--join", "x"} },
	})
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m, fc, fa
}

func TestNemesisInjectHeal(t *testing.T) {
	tests := []struct {
		name       string
		fault      verify.Fault
		inject     []string
		heal       []string
		injectSort bool // concurrent calls: compare sorted
	}{
		{
			name:   "kill",
			fault:  verify.Fault{Kind: verify.FaultKill, Nodes: []string{"n2"}},
			inject: []string{"kill n2"}, heal: []string{"start n2"},
		},
		{
			name:   "kill-all at once",
			fault:  verify.Fault{Kind: verify.FaultKillAll, Nodes: []string{"n1", "n2", "n3"}},
			inject: []string{"kill n1", "kill n2", "kill n3"}, heal: []string{"start n1", "start n2", "start n3"}, injectSort: true,
		},
		{
			name:   "pause",
			fault:  verify.Fault{Kind: verify.FaultPause, Nodes: []string{"n3"}},
			inject: []string{"pause n3"}, heal: []string{"unpause n3"},
		},
		{
			name:   "isolate",
			fault:  verify.Fault{Kind: verify.FaultIsolate, Nodes: []string{"n1"}},
			inject: []string{"drop n1>n2 n1>n3 n2>n1 n3>n1"}, heal: []string{"heal-network"},
		},
		{
			name:   "split",
			fault:  verify.Fault{Kind: verify.FaultSplit, Nodes: []string{"n2"}},
			inject: []string{"drop n1>n2 n2>n1 n2>n3 n3>n2"}, heal: []string{"heal-network"},
		},
		{
			name:   "bridge",
			fault:  verify.Fault{Kind: verify.FaultBridge, Nodes: []string{"n2"}},
			inject: []string{"drop n1>n3 n3>n1"}, heal: []string{"heal-network"},
		},
		{
			name:   "oneway in",
			fault:  verify.Fault{Kind: verify.FaultOneWay, Nodes: []string{"n3"}, Params: map[string]string{"dir": "in"}},
			inject: []string{"drop n1>n3 n2>n3"}, heal: []string{"heal-network"},
		},
		{
			name:   "oneway out",
			fault:  verify.Fault{Kind: verify.FaultOneWay, Nodes: []string{"n3"}, Params: map[string]string{"dir": "out"}},
			inject: []string{"drop n3>n1 n3>n2"}, heal: []string{"heal-network"},
		},
		{
			name: "delay with loss, jitter clamped to the delay",
			fault: verify.Fault{Kind: verify.FaultDelay, Nodes: []string{"n1", "n2"},
				Params: map[string]string{"delay": "20ms", "jitter": "50ms", "loss": "0.10"}},
			inject: []string{"degrade n1,n2 20ms 20ms 0.10"},
			heal:   []string{"heal-network"},
		},
		{
			name:   "delay without loss",
			fault:  verify.Fault{Kind: verify.FaultDelay, Nodes: []string{"n2"}, Params: map[string]string{"delay": "100ms", "jitter": "10ms", "loss": "0.00"}},
			inject: []string{"degrade n2 100ms 10ms 0.00"}, heal: []string{"heal-network"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, fc, _ := fakeNemesis(t)
			ctx := context.Background()
			f := tt.fault
			f.ID = 1
			if err := m.Inject(ctx, &f); err != nil {
				t.Fatalf("Inject: %v", err)
			}
			got := fc.Calls()
			if tt.injectSort {
				slices.Sort(got)
			}
			if !slices.Equal(got, tt.inject) {
				t.Errorf("Inject: got %q, want %q", got, tt.inject)
			}
			if err := m.Heal(ctx, &f); err != nil {
				t.Fatalf("Heal: %v", err)
			}
			got = fc.Calls()
			slices.Sort(got)
			if !slices.Equal(got, tt.heal) {
				t.Errorf("Heal: got %q, want %q", got, tt.heal)
			}
		})
	}
}

func TestNemesisSupports(t *testing.T) {
	m, _, _ := fakeNemesis(t)
	for _, k := range verify.AllFaultKinds {
		// No spare, no small data filesystems.
		if got, want := m.Supports(k), k != verify.FaultCrashpoint && k != verify.FaultMove && k != verify.FaultScale && k != verify.FaultDiskFull; got != want {
			t.Errorf("Supports(%s): got %t, want %t", k, got, want)
		}
	}
	if got, want := m.MemberOps(), []string{"remove-readd", "wipe-readd"}; !slices.Equal(got, want) {
		t.Errorf("MemberOps without a spare: got %q, want %q", got, want)
	}
	ms, _, _ := fakeNemesis(t, "n4")
	if got := ms.MemberOps(); !slices.Contains(got, "add") {
		t.Errorf("MemberOps with a spare: got %q, want add among them", got)
	}
	f := &verify.Fault{ID: 1, Kind: verify.FaultCrashpoint, Nodes: []string{"n1"}}
	if err := m.Inject(context.Background(), f); !errors.Is(err, verify.ErrUnsupported) {
		t.Errorf("Inject crashpoint: got %v, want ErrUnsupported", err)
	}
}

// calls are the calls a nemesis step should make on the admin client and
// on the containers, in order.
type calls struct{ admin, containers []string }

// check takes the calls made since the last check and compares them.
func (want calls) check(t *testing.T, step string, fa *fakeAdmin, fc *fakeContainers) {
	t.Helper()
	if got := fa.Calls(); !slices.Equal(got, want.admin) {
		t.Errorf("%s: admin calls got %q, want %q", step, got, want.admin)
	}
	if got := fc.Calls(); !slices.Equal(got, want.containers) {
		t.Errorf("%s: container calls got %q, want %q", step, got, want.containers)
	}
}

func TestNemesisMember(t *testing.T) {
	ctx := context.Background()
	// Each case injects and heals one fault and checks the calls each made,
	// on the admin client and on the containers (nil: none).
	for _, tc := range []struct {
		name   string
		spares []string
		fault  verify.Fault
		inject calls
		heal   calls
	}{
		{
			name:  "remove-readd",
			fault: verify.Fault{ID: 1, Kind: verify.FaultMember, Nodes: []string{"n2"}, Params: map[string]string{"op": "remove-readd"}},
			// The removed node keeps running.
			inject: calls{admin: []string{"remove --force n2"}},
			// Killed and wiped before it is added, started only after.
			heal: calls{admin: []string{"add n2 n2:7000"}, containers: []string{"kill n2", "wipe n2", "recreate n2 --id n2 --join x", "start n2"}},
		},
		{
			name:   "wipe-readd",
			fault:  verify.Fault{ID: 1, Kind: verify.FaultMember, Nodes: []string{"n3"}, Params: map[string]string{"op": "wipe-readd"}},
			inject: calls{admin: []string{"remove --force n3", "add n3 n3:7000"}, containers: []string{"kill n3", "wipe n3", "recreate n3 --id n3 --join x", "start n3"}},
			heal:   calls{},
		},
		{
			name:   "add",
			spares: []string{"n4"},
			fault:  verify.Fault{ID: 1, Kind: verify.FaultMember, Nodes: []string{"n1"}, Params: map[string]string{"op": "add"}},
			inject: calls{admin: []string{"add n4 n4:7000"}, containers: []string{"start n4"}},
			heal:   calls{admin: []string{"drain n4", "remove n4"}, containers: []string{"kill n4", "wipe n4"}},
		},
		{
			name:   "move",
			spares: []string{"s4"},
			fault:  verify.Fault{ID: 1, Kind: verify.FaultMove, Nodes: []string{"n2"}, Params: map[string]string{"group": "data-1"}},
			inject: calls{admin: []string{"add s4 s4:7000", "move data-1 n2 s4"}, containers: []string{"start s4"}},
			heal:   calls{admin: []string{"drain s4", "remove s4"}, containers: []string{"kill s4", "wipe s4"}},
		},
		{
			name:   "scale replace",
			spares: []string{"s4"},
			fault:  verify.Fault{ID: 1, Kind: verify.FaultScale, Nodes: []string{"n2"}, Params: map[string]string{"op": "replace"}},
			// The spare joins first, then n2 dies and is removed.
			inject: calls{admin: []string{"add s4 s4:7000", "remove --force n2"}, containers: []string{"start s4", "kill n2"}},
			// n2 comes back wiped as a new member, then the spare leaves.
			heal: calls{admin: []string{"add n2 n2:7000", "drain s4", "remove s4"}, containers: []string{"kill n2", "wipe n2", "recreate n2 --id n2 --join x", "start n2", "kill s4", "wipe s4"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, fc, fa := fakeNemesis(t, tc.spares...)
			f := tc.fault
			if err := m.Inject(ctx, &f); err != nil {
				t.Fatal(err)
			}
			tc.inject.check(t, "Inject", fa, fc)
			if err := m.Heal(ctx, &f); err != nil {
				t.Fatal(err)
			}
			tc.heal.check(t, "Heal", fa, fc)
		})
	}
	t.Run("move needs a spare", func(t *testing.T) {
		m, _, _ := fakeNemesis(t, "s4")
		if !m.Supports(verify.FaultMove) {
			t.Fatal("Supports(move) with a spare: got false")
		}
		m, _, _ = fakeNemesis(t)
		if m.Supports(verify.FaultMove) {
			t.Error("Supports(move) without a spare: got true")
		}
	})
	t.Run("add without a spare", func(t *testing.T) {
		m, _, _ := fakeNemesis(t)
		f := &verify.Fault{ID: 1, Kind: verify.FaultMember, Nodes: []string{"n1"}, Params: map[string]string{"op": "add"}}
		if err := m.Inject(ctx, f); !errors.Is(err, verify.ErrUnsupported) {
			t.Errorf("got %v, want ErrUnsupported", err)
		}
	})
}

// TestHealAllRestores: whatever a failed schedule left behind, HealAll
// leaves the nodes running, unpaused, connected, and the member list as
// it began.
func TestHealAllRestores(t *testing.T) {
	ctx := context.Background()
	m, fc, fa := fakeNemesis(t, "n4")
	// A removed node whose re-add never happened, a spare still in, a
	// killed node, a paused node.
	rm := &verify.Fault{ID: 1, Kind: verify.FaultMember, Nodes: []string{"n2"}, Params: map[string]string{"op": "remove-readd"}}
	add := &verify.Fault{ID: 2, Kind: verify.FaultMember, Nodes: []string{"n1"}, Params: map[string]string{"op": "add"}}
	kill := &verify.Fault{ID: 3, Kind: verify.FaultKill, Nodes: []string{"n3"}}
	pause := &verify.Fault{ID: 4, Kind: verify.FaultPause, Nodes: []string{"n1"}}
	for _, f := range []*verify.Fault{rm, add, kill, pause} {
		if err := m.Inject(ctx, f); err != nil {
			t.Fatalf("Inject %s: %v", f, err)
		}
	}
	fc.Calls()
	if err := m.HealAll(ctx); err != nil {
		t.Fatalf("HealAll: %v", err)
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		st, _ := fc.State(ctx, n)
		if !st.Running || st.Paused {
			t.Errorf("%s after HealAll: got %+v, want running and not paused", n, st)
		}
	}
	if st, _ := fc.State(ctx, "n4"); st.Running {
		t.Errorf("spare after HealAll: got running, want stopped")
	}
	ms, _ := fa.Members(ctx)
	var ids []string
	for _, mb := range ms.Members {
		ids = append(ids, mb.Id)
	}
	if want := []string{"n1", "n2", "n3"}; !slices.Equal(ids, want) {
		t.Errorf("members after HealAll: got %q, want %q", ids, want)
	}
	if calls := fc.Calls(); !slices.Contains(calls, "heal-network") {
		t.Errorf("HealAll calls %q: want heal-network among them", calls)
	}
	for _, n := range m.Notes() {
		if n.Problem {
			t.Errorf("unexpected problem note: %s", n.Text)
		}
	}
}

// TestStrayNodeIsAProblem: a node down that no fault stopped is noted as
// a problem (it crashed by itself) and restarted.
func TestStrayNodeIsAProblem(t *testing.T) {
	ctx := context.Background()
	m, fc, _ := fakeNemesis(t)
	fc.set(fc.running, "n2", false)
	f := &verify.Fault{ID: 1, Kind: verify.FaultPause, Nodes: []string{"n1"}}
	if err := m.Inject(ctx, f); err != nil {
		t.Fatal(err)
	}
	if st, _ := fc.State(ctx, "n2"); !st.Running {
		t.Errorf("n2: got stopped, want restarted")
	}
	res := CheckNodes(nil, m.Notes(), 3, nil)
	if res.Verdict != verify.Invalid {
		t.Errorf("nodes check: got %s, want invalid (%+v)", res.Verdict, res)
	}
}

func TestNemesisLoops(t *testing.T) {
	ctx := context.Background()
	t.Run("flap", func(t *testing.T) {
		m, fc, _ := fakeNemesis(t)
		f := &verify.Fault{ID: 1, Kind: verify.FaultFlap, Nodes: []string{"n2"}, Params: map[string]string{"period": "10ms"}}
		if err := m.Inject(ctx, f); err != nil {
			t.Fatal(err)
		}
		poll.For(t, "the flap loop to heal and cut again", 5*time.Second, func() error {
			fc.mu.Lock()
			defer fc.mu.Unlock()
			heals, cuts := 0, 0
			for _, c := range fc.calls {
				if c == "heal-partitions" {
					heals++
				}
				if strings.HasPrefix(c, "drop ") {
					cuts++
				}
			}
			return poll.Check(heals >= 2 && cuts >= 2, fmt.Sprint(fc.calls))
		})
		if err := m.Heal(ctx, f); err != nil {
			t.Fatal(err)
		}
		calls := fc.Calls()
		if got := calls[len(calls)-1]; got != "heal-network" {
			t.Errorf("last call: got %q, want heal-network", got)
		}
		if got := fc.Calls(); len(got) != 0 {
			t.Errorf("after Heal the loop still acts: %q", got)
		}
	})
	t.Run("transfer", func(t *testing.T) {
		m, _, fa := fakeNemesis(t)
		f := &verify.Fault{ID: 1, Kind: verify.FaultTransfer, Params: map[string]string{"group": "data-0", "every": "5ms"}}
		if err := m.Inject(ctx, f); err != nil {
			t.Fatal(err)
		}
		poll.For(t, "a few transfers", 5*time.Second, func() error {
			fa.mu.Lock()
			defer fa.mu.Unlock()
			return poll.Check(fa.transfers >= 3, fmt.Sprint(fa.transfers))
		})
		if err := m.Heal(ctx, f); err != nil {
			t.Fatal(err)
		}
		fa.mu.Lock()
		n := fa.transfers
		fa.mu.Unlock()
		if !slices.ContainsFunc(m.Notes(), func(n Note) bool { return strings.Contains(n.Text, "transfer storm on data-0") }) {
			t.Errorf("notes %v: want the storm's summary", m.Notes())
		}
		// Close waits for the loop: nothing may run after.
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		fa.mu.Lock()
		defer fa.mu.Unlock()
		if fa.transfers != n {
			t.Errorf("transfers after Heal: got %d more, want none", fa.transfers-n)
		}
	})
}

func TestNemesisLag(t *testing.T) {
	ctx := context.Background()
	m, fc, fa := fakeNemesis(t)
	f := &verify.Fault{ID: 7, Kind: verify.FaultLag, Nodes: []string{"n3"}, Params: map[string]string{"group": "data-0"}}
	if err := m.Inject(ctx, f); err != nil {
		t.Fatal(err)
	}
	if got, want := fc.Calls(), []string{"drop n1>n3 n2>n3 n3>n1 n3>n2"}; !slices.Equal(got, want) {
		t.Errorf("Inject: got %q, want %q", got, want)
	}
	// The leader snapshots at 500 while n3 (last log 100) is cut off.
	fa.mu.Lock()
	fa.snapIndex = 500
	fa.mu.Unlock()
	if err := m.Heal(ctx, f); err != nil {
		t.Fatal(err)
	}
	notes := m.Notes()
	if !slices.ContainsFunc(notes, func(n Note) bool {
		return n.Fault == 7 && strings.Contains(n.Text, "snapshot needed: true") && strings.Contains(n.Text, "installed from leader: true")
	}) {
		t.Errorf("notes: got %+v, want one saying a snapshot was needed and installed", notes)
	}
}

// TestNemesisReplicationBelowNodes: on a cluster of 5 nodes whose groups
// have 3 replicas each, faults aimed at a follower land on a replica,
// a move gives the replica to a member that holds none (no spare, nothing
// to undo at heal), a transfer storm names replicas only, and a member
// that comes back is waited for by placement, not as a voter of every
// group.
func TestNemesisReplicationBelowNodes(t *testing.T) {
	ctx := context.Background()
	replicas := func(fa *fakeAdmin, g string) []string {
		fa.mu.Lock()
		defer fa.mu.Unlock()
		return fa.replicas(g)
	}
	nodes := NodeNames(5)
	others := func(of []string) []string {
		return slices.DeleteFunc(slices.Clone(nodes), func(n string) bool { return slices.Contains(of, n) })
	}

	t.Run("replication factors and supports", func(t *testing.T) {
		m, _, _ := fakeNemesisRF(t, 5, 3)
		if m.Supports(verify.FaultMove) {
			t.Error("Supports(move) before the replication factor is read, without a spare: got true")
		}
		rf, mdRF, err := m.ReplicationFactors(ctx)
		if err != nil || rf != 3 || mdRF != 3 {
			t.Fatalf("ReplicationFactors: got %d, %d, %v; want 3, 3", rf, mdRF, err)
		}
		if !m.Supports(verify.FaultMove) || m.Supports(verify.FaultScale) {
			t.Errorf("Supports: got move %t, scale %t; want true (a member takes the replica), false (no spare)",
				m.Supports(verify.FaultMove), m.Supports(verify.FaultScale))
		}
		full, _, _ := fakeNemesisRF(t, 3, 0)
		if _, _, err := full.ReplicationFactors(ctx); err != nil {
			t.Fatal(err)
		}
		if full.Supports(verify.FaultMove) {
			t.Error("Supports(move) with the replication factor at the node count, without a spare: got true")
		}
	})

	t.Run("followers are replicas", func(t *testing.T) {
		m, _, fa := fakeNemesisRF(t, 5, 3)
		for _, g := range fa.groups {
			r := replicas(fa, g)
			got, err := m.Resolve(ctx, verify.FollowerOf(g))
			if err != nil || !slices.Equal(got, r[1:]) {
				t.Errorf("Resolve(follower:%s): got %v, %v; want %v (the replicas %v but the leader)", g, got, err, r[1:], r)
			}
		}
	})

	t.Run("move to a member", func(t *testing.T) {
		m, fc, fa := fakeNemesisRF(t, 5, 3, "s6")
		g := metapb.DataGroup(1)
		before := replicas(fa, g)
		free := others(before)
		if len(before) != 3 || len(free) != 2 {
			t.Fatalf("fake placement of %s: %v", g, before)
		}
		f := &verify.Fault{ID: 1, Kind: verify.FaultMove, Nodes: before[:1], Pick: 1, Params: map[string]string{"group": g}}
		if err := m.Inject(ctx, f); err != nil {
			t.Fatal(err)
		}
		if got, want := fa.Calls(), []string{"move " + g + " " + before[0] + " " + free[1]}; !slices.Equal(got, want) {
			t.Errorf("Inject: admin calls got %q, want %q (no spare added)", got, want)
		}
		if got := fc.Calls(); len(got) != 0 {
			t.Errorf("Inject: container calls got %q, want none", got)
		}
		if after := replicas(fa, g); slices.Contains(after, before[0]) || !slices.Contains(after, free[1]) {
			t.Errorf("replicas after the move: got %v, want %s's replaced by %s", after, before[0], free[1])
		}
		if err := m.Heal(ctx, f); err != nil {
			t.Fatal(err)
		}
		if a, c := fa.Calls(), fc.Calls(); len(a)+len(c) != 0 {
			t.Errorf("Heal: got admin calls %q and container calls %q, want none (nothing to undo)", a, c)
		}
	})

	t.Run("transfers name replicas", func(t *testing.T) {
		m, _, fa := fakeNemesisRF(t, 5, 3)
		g := metapb.DataGroup(0)
		f := &verify.Fault{ID: 1, Kind: verify.FaultTransfer, Params: map[string]string{"group": g, "every": "5ms"}}
		if err := m.Inject(ctx, f); err != nil {
			t.Fatal(err)
		}
		poll.For(t, "a few transfers to a named node", 5*time.Second, func() error {
			fa.mu.Lock()
			defer fa.mu.Unlock()
			return poll.Check(len(fa.targets[g]) >= 5, fmt.Sprint(fa.targets))
		})
		if err := m.Heal(ctx, f); err != nil {
			t.Fatal(err)
		}
		r := replicas(fa, g)
		fa.mu.Lock()
		defer fa.mu.Unlock()
		for _, n := range fa.targets[g] {
			if n == r[0] || !slices.Contains(r, n) {
				t.Errorf("transfer of %s to %s: want one of its followers %v", g, n, r[1:])
			}
		}
	})

	t.Run("a member that comes back is waited for by placement", func(t *testing.T) {
		m, _, fa := fakeNemesisRF(t, 5, 3)
		f := &verify.Fault{ID: 1, Kind: verify.FaultMember, Nodes: []string{"n2"}, Params: map[string]string{"op": "remove-readd"}}
		if err := m.Inject(ctx, f); err != nil {
			t.Fatal(err)
		}
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := m.Heal(hctx, f); err != nil {
			t.Fatalf("Heal: %v (n2 holds %d of %d groups: it is no voter of every group)", err, len(slices.DeleteFunc(slices.Clone(fa.groups),
				func(g string) bool { return !slices.Contains(replicas(fa, g), "n2") })), len(fa.groups))
		}
		// A replica its leader has not promoted yet: not settled.
		g := metapb.OffsetGroup(1)
		fa.mu.Lock()
		fa.learner[g] = fa.replicas(g)[2]
		fa.mu.Unlock()
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if err := m.waitPlaced(wctx, f, "n2"); err == nil || !strings.Contains(err.Error(), "not a voter") {
			t.Errorf("waitPlaced with a non-voter in %s's configuration: got %v, want it still waiting for the promotion", g, err)
		}
	})
}

// A reshard fault splits the data group holding one of the keys written
// last, just below the key's hash (so the key moves to the new group),
// and its Heal returns once the directory shows the split done and every
// group led; the run's notes say where it split.
func TestNemesisReshard(t *testing.T) {
	m, _, fa := fakeNemesis(t)
	fa.levels = func(string) (uint32, uint32) { return SplitLevel, SplitLevel }
	for i := range 20 {
		fa.kvs = append(fa.kvs, &metapb.KeyValue{Key: fmt.Appendf(nil, "k%02d", i), ModRevision: uint64(100 + i)})
	}
	ctx := context.Background()
	f := &verify.Fault{ID: 3, Kind: verify.FaultReshard, Pick: 5}
	if !m.Supports(verify.FaultReshard) {
		t.Fatal("the container nemesis does not support reshard")
	}
	if err := m.Inject(ctx, f); err != nil {
		t.Fatalf("Inject: %v", err)
	}
	// The hot keys are the 8 written last (k12..k19), taken from the
	// Pick-th (mod 8) on.
	want, err := verify.PickReshard(ctx, newFakeAdmin("n1", "n2", "n3").withKVs(fa.kvs), f.Pick)
	if err != nil {
		t.Fatal(err)
	}
	if want.Key < "k12" {
		t.Fatalf("the split was placed under %q, not a key written last", want.Key)
	}
	if got := fa.Calls(); !slices.Contains(got, fmt.Sprintf("split %s at %#x", want.Group, want.At)) {
		t.Fatalf("calls %q: want the split of %s at %#x (below %q)", got, want.Group, want.At, want.Key)
	}
	gs, _ := fa.ListGroups(ctx)
	var holder string
	for _, g := range gs.Groups {
		for _, r := range g.Ranges {
			if r.Lo <= uint64(want.Hash) && uint64(want.Hash) < r.Hi {
				holder = g.Group
			}
		}
	}
	if holder != "data-2" {
		t.Fatalf("after the split %q (hash %#x) is in %s, want the new group data-2", want.Key, want.Hash, holder)
	}
	if err := m.Heal(ctx, f); err != nil {
		t.Fatalf("Heal: %v", err)
	}
	if !hasNote(m, "split "+want.Group) {
		t.Errorf("notes %v: want the split noted", m.Notes())
	}
}

// A reshard fault on a cluster whose version cannot split (an upgrade
// from an older release not finished) is skipped with a note.
func TestNemesisReshardSkippedBelowSplitLevel(t *testing.T) {
	m, _, fa := fakeNemesis(t)
	fa.levels = func(node string) (uint32, uint32) {
		if node == "n2" {
			return SplitLevel, SplitLevel - 1
		}
		return SplitLevel - 1, SplitLevel - 1
	}
	for i := range 20 {
		fa.kvs = append(fa.kvs, &metapb.KeyValue{Key: fmt.Appendf(nil, "k%02d", i), ModRevision: uint64(100 + i)})
	}
	ctx := context.Background()
	f := &verify.Fault{ID: 3, Kind: verify.FaultReshard, Pick: 5}
	if err := m.Inject(ctx, f); err != nil {
		t.Fatalf("Inject: %v", err)
	}
	if err := m.Heal(ctx, f); err != nil {
		t.Fatalf("Heal: %v", err)
	}
	if !hasNote(m, "ops: reshard skipped: cluster version 2") || slices.ContainsFunc(fa.Calls(), func(c string) bool { return strings.HasPrefix(c, "split") }) {
		t.Errorf("notes %v, calls %q: want the skip noted and no split", m.Notes(), fa.Calls())
	}
}

func (a *fakeAdmin) withKVs(kvs []*metapb.KeyValue) *fakeAdmin {
	a.kvs = kvs
	return a
}
