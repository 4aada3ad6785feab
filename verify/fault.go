package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/metamq/meta/rpc/metapb"
)

// Fault sentinels. Nemeses wrap them with %w.
var (
	// ErrUnsupported: a nemesis cannot inject this kind of fault.
	ErrUnsupported = errors.New("verify: fault not supported by this nemesis")
	// ErrNoLeader: no node claims to lead the group a target names.
	ErrNoLeader = errors.New("verify: no leader")
	// ErrNoFollower: the group a follower target names has a leader but
	// no other voter (see ResolveTarget).
	ErrNoFollower = errors.New("verify: no follower")
	// ErrBadTarget: a target string that does not parse.
	ErrBadTarget = errors.New("verify: bad fault target")
	// ErrBadKind: a fault kind nobody knows.
	ErrBadKind = errors.New("verify: unknown fault kind")
)

// FaultKind names a fault. The contract of each kind (what the nemesis
// does at Inject and at Heal, which nodes it touches) is written next to
// its constant; the in-process harness and chaos/ implement the same
// contract, so a schedule means the same thing on both.
type FaultKind string

const (
	// FaultKill crash-stops Nodes (kill -9: no shutdown, no flush) at
	// Inject and restarts them on their data directories at Heal.
	FaultKill FaultKind = "kill"
	// FaultKillAll crash-stops every node at Inject and restarts them all
	// at Heal. Nobody can serve in between.
	FaultKillAll FaultKind = "kill-all"
	// FaultPause freezes Nodes (SIGSTOP, cgroup freezer, or in process:
	// every message to and from the node and every request it serves is
	// held) at Inject and resumes them at Heal. Durations exceed the
	// election timeout, so a paused leader is replaced and comes back
	// stale.
	FaultPause FaultKind = "pause"
	// FaultIsolate cuts every link between Nodes and the other nodes, both
	// directions (CutLinks). Clients still reach every node.
	FaultIsolate FaultKind = "isolate"
	// FaultSplit partitions the cluster into a minority (Nodes, which
	// contains the target) and a majority (the rest). CutLinks lists the
	// cut.
	FaultSplit FaultKind = "split"
	// FaultBridge: Nodes[0] is the bridge; the other nodes, sorted, are cut
	// into two halves that cannot talk to each other but both talk to the
	// bridge (CutLinks).
	FaultBridge FaultKind = "bridge"
	// FaultOneWay drops messages in one direction only: Params["dir"] is
	// "in" (others → Nodes[0] dropped) or "out" (Nodes[0] → others
	// dropped). CutLinks lists the dropped directions.
	FaultOneWay FaultKind = "oneway"
	// FaultFlap isolates Nodes[0] and heals it again, over and over, every
	// Params["period"] (a Go duration, 1–3s), for the fault's duration;
	// Heal leaves the network whole.
	FaultFlap FaultKind = "flap"
	// FaultDelay delays messages on every link touching Nodes by
	// Params["delay"] ± Params["jitter"] (Go durations) and drops a
	// Params["loss"] fraction (0..1) of them.
	FaultDelay FaultKind = "delay"
	// FaultMember changes membership under load, per Params["op"]:
	//   "remove-readd": RemoveMember(Nodes[0]) at Inject; at Heal wipe its
	//                   data, AddMember it again and restart it to join.
	//   "wipe-readd":   all of remove, wipe, re-add and restart at Inject
	//                   (the node catches up during the window); Heal waits
	//                   for nothing more.
	//   "add":          start a spare node and AddMember it at Inject;
	//                   at Heal, once the controller has given it replicas
	//                   (WaitFilled, as for scale "grow"), drain it,
	//                   RemoveMember and stop it. Nemeses without a spare
	//                   return ErrUnsupported.
	FaultMember FaultKind = "member"
	// FaultTransfer is a leadership storm: TransferLeader on
	// Params["group"] every Params["every"] (a Go duration) until Heal.
	FaultTransfer FaultKind = "transfer"
	// FaultLag cuts Nodes[0] (a follower) off like isolate and, while it is
	// cut off, makes the group's leader compact its log past the follower
	// (Params["group"]; e.g. force a snapshot), so that at Heal the
	// follower needs a snapshot to come back.
	FaultLag FaultKind = "lag"
	// FaultCrashpoint arms the crash point Params["point"] in Nodes[0]: the
	// node crashes (like kill) when it reaches that point; Heal disarms it
	// and restarts the node if it crashed. An empty point lets the nemesis
	// choose.
	FaultCrashpoint FaultKind = "crashpoint"
	// FaultMove moves a replica under load: Nodes[0] (two times in three
	// the leader of Params["group"]) gives its replica of the group to a
	// node that holds none, through the public MoveReplica. The group's
	// leader adds the new replica as a non-voter, catches it up, promotes
	// it, hands its leadership off when it is the one leaving, and
	// removes Nodes[0]. On a cluster where every node holds every group
	// the nemesis first adds a spare to take the replica; Heal then
	// drains and removes the spare (the replica moves back). Nemeses
	// without a spare for such a cluster return ErrUnsupported.
	FaultMove FaultKind = "move"
	// FaultScale changes the pool of nodes under load, per Params["op"]:
	//   "grow":    a spare joins and the controller rebalances replicas
	//              onto it; Heal drains it (its replicas and leaderships
	//              move off) and removes it.
	//   "replace": Nodes[0] dies for good: a spare joins, Nodes[0] is
	//              crashed and removed, and the controller re-creates its
	//              replicas on the survivors and the spare; Heal brings
	//              Nodes[0] back on an empty data directory as a new
	//              member and retires the spare.
	// Nemeses without a spare return ErrUnsupported.
	FaultScale FaultKind = "scale"
)

// ScaleOps are the operations of a scale fault.
var ScaleOps = []string{"grow", "replace"}

// AllFaultKinds lists every kind, in a fixed order: the crash, network
// and membership kinds, reshard (fault_reshard.go), then the operations
// kinds (fault_ops.go).
var AllFaultKinds = append([]FaultKind{
	FaultKill, FaultKillAll, FaultPause, FaultIsolate, FaultSplit, FaultBridge, FaultOneWay,
	FaultFlap, FaultDelay, FaultMember, FaultTransfer, FaultLag, FaultCrashpoint, FaultMove, FaultScale,
	FaultReshard,
}, OpsFaultKinds...)

// JoinKinds is kinds as the comma-separated list ParseKinds reads ("" for
// none).
func JoinKinds(kinds []FaultKind) string {
	s := make([]string, len(kinds))
	for i, k := range kinds {
		s[i] = string(k)
	}
	return strings.Join(s, ",")
}

// ParseKinds parses a comma-separated list of fault kinds. "partition"
// stands for isolate,split,bridge,oneway; "all" for every kind.
// Duplicates are removed; the order is kept.
func ParseKinds(s string) ([]FaultKind, error) {
	var out []FaultKind
	var errs []error
	add := func(k FaultKind) {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		switch name {
		case "":
		case "all":
			for _, k := range AllFaultKinds {
				add(k)
			}
		case "partition":
			for _, k := range []FaultKind{FaultIsolate, FaultSplit, FaultBridge, FaultOneWay} {
				add(k)
			}
		default:
			if !slices.Contains(AllFaultKinds, FaultKind(name)) {
				errs = append(errs, fmt.Errorf("%w: %q", ErrBadKind, name))
				continue
			}
			add(FaultKind(name))
		}
	}
	return out, errors.Join(errs...)
}

// Target names the node(s) a fault aims at, by role, resolved when the
// fault starts: "leader:<group>", "follower:<group>", "random" or "all".
type Target string

const (
	TargetRandom Target = "random"
	TargetAll    Target = "all"
)

// LeaderOf targets the leader of group.
func LeaderOf(group string) Target { return Target("leader:" + group) }

// FollowerOf targets a follower of group.
func FollowerOf(group string) Target { return Target("follower:" + group) }

// Parse splits a target into its role ("leader", "follower", "random",
// "all") and group.
func (t Target) Parse() (role, group string, err error) {
	switch t {
	case TargetRandom, TargetAll:
		return string(t), "", nil
	}
	role, group, ok := strings.Cut(string(t), ":")
	if !ok || group == "" || (role != "leader" && role != "follower") {
		return "", "", fmt.Errorf("%w: %q", ErrBadTarget, t)
	}
	return role, group, nil
}

// Fault is one fault of a schedule, and after a run its record.
//
// Start and Duration are planned, relative to the start of the workload.
// Nodes are resolved when the fault starts (Resolve, then Bind). Began and
// Ended are observed on the run clock: Began just before Inject, Ended just
// after Heal returned. Err holds the errors of resolving, Inject or Heal.
type Fault struct {
	ID       int               `json:"id"`
	Kind     FaultKind         `json:"kind"`
	Target   Target            `json:"target"`
	Start    time.Duration     `json:"start_ns"`
	Duration time.Duration     `json:"duration_ns"`
	Params   map[string]string `json:"params,omitempty"`
	// Pick chooses among candidates (a follower, a random node) so that a
	// seed decides the choice given the cluster's state.
	Pick  uint64        `json:"pick"`
	Nodes []string      `json:"nodes,omitempty"`
	Began time.Duration `json:"began_ns,omitempty"`
	Ended time.Duration `json:"ended_ns,omitempty"`
	Err   string        `json:"error,omitempty"`
	// Recovery is how long the cluster took to serve again after the
	// heal (see AwaitRecovery); nil if the run stopped before it was
	// probed.
	Recovery *Recovery `json:"recovery,omitempty"`
}

// String renders a fault for logs: "#3 kill leader:data-0 [n2] @4s for 3s".
func (f *Fault) String() string {
	s := fmt.Sprintf("#%d %s %s", f.ID, f.Kind, f.Target)
	if len(f.Nodes) > 0 {
		s += " [" + strings.Join(f.Nodes, ",") + "]"
	}
	if len(f.Params) > 0 {
		keys := make([]string, 0, len(f.Params))
		for k := range f.Params {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			s += " " + k + "=" + f.Params[k]
		}
	}
	return s + fmt.Sprintf(" @%s for %s", f.Start, f.Duration)
}

// Nemesis injects faults into a cluster. The in-process harness
// (metanode/metanodetest) and chaos/ implement it. Calls come from one
// goroutine, in the order Inject(f), Heal(f), Inject(g), ... with HealAll
// at the end (and after an error); faults never overlap.
type Nemesis interface {
	// Nodes returns the ids of the cluster's nodes, sorted.
	Nodes() []string
	// Resolve returns the candidate nodes for a target, sorted: the leader
	// for leader:<g> (exactly one), every follower of g for follower:<g>
	// (the other voters of g's leader's configuration: g's replicas, not
	// every node), every node for random and all. Run picks among them with the fault's
	// Pick. ResolveTarget is a default built on client.Status.
	Resolve(ctx context.Context, t Target) ([]string, error)
	// Inject starts f on f.Nodes (already bound). It returns once the
	// fault is in effect (or running, for flap and transfer).
	Inject(ctx context.Context, f *Fault) error
	// Heal ends f: restarts, reconnects, re-adds, as the kind says.
	Heal(ctx context.Context, f *Fault) error
	// HealAll ends every fault and leaves every node running and
	// connected.
	HealAll(ctx context.Context) error
}

// KindSupporter is implemented by nemeses that cannot inject every kind;
// Run refuses a schedule with a kind they do not support.
type KindSupporter interface {
	Supports(k FaultKind) bool
}

// StatusReader is the part of the public client ResolveTarget needs.
type StatusReader interface {
	Status(ctx context.Context, endpoint string) (*metapb.StatusResponse, error)
}

// ResolveTarget is a default Nemesis.Resolve: it asks every node for its
// Status. endpoints maps node ids to client endpoints. The leader of a
// group is the node that says it leads it with the highest term (a deposed
// leader that has not noticed yet has a lower term). The followers of a
// group are its other replicas: the voters of that leader's configuration
// (GroupStatus.Members) other than the leader, among the nodes of
// endpoints. On a cluster whose replication factor is below its node
// count that is not every other node: a node holding no replica of the
// group is no follower of it, and a fault aimed at one must not land
// there. A group whose leader's configuration has no other voter (a
// single replica) has no follower: ErrNoFollower.
func ResolveTarget(ctx context.Context, sr StatusReader, endpoints map[string]string, t Target) ([]string, error) {
	role, group, err := t.Parse()
	if err != nil {
		return nil, err
	}
	nodes := make([]string, 0, len(endpoints))
	for id := range endpoints {
		nodes = append(nodes, id)
	}
	slices.Sort(nodes)
	if role == "random" || role == "all" {
		return nodes, nil
	}
	leader, ls := "", (*metapb.GroupStatus)(nil)
	for _, id := range nodes {
		st, err := sr.Status(ctx, endpoints[id])
		if err != nil {
			continue
		}
		for _, g := range st.Groups {
			if g.Group == group && g.State == "Leader" && (ls == nil || g.Term > ls.Term) {
				leader, ls = id, g
			}
		}
	}
	if ls == nil {
		return nil, fmt.Errorf("%w: group %s", ErrNoLeader, group)
	}
	if role == "leader" {
		return []string{leader}, nil
	}
	var followers []string
	for _, m := range ls.Members {
		if m.Voter && m.Id != leader && slices.Contains(nodes, m.Id) {
			followers = append(followers, m.Id)
		}
	}
	if len(followers) == 0 {
		return nil, fmt.Errorf("%w: group %s: its leader %s (term %d) has no other voter among %v",
			ErrNoFollower, group, leader, ls.Term, nodes)
	}
	slices.Sort(followers)
	return slices.Compact(followers), nil
}

// Bind sets f.Nodes from the candidates Resolve returned and every node of
// the cluster (all), deterministically given f.Pick:
//
//   - all (and kill-all): every node;
//   - leader: the candidate; follower, random: candidates[Pick % n];
//   - split: the chosen node plus the next nodes (in sorted order, wrapping
//     around) up to a minority of (n-1)/2 nodes, at least one.
func (f *Fault) Bind(candidates, all []string) error {
	all = slices.Sorted(slices.Values(all))
	if f.Kind == FaultKillAll || f.Target == TargetAll {
		f.Nodes = all
		return nil
	}
	if len(candidates) == 0 {
		return fmt.Errorf("verify: fault %d: no candidate for %s", f.ID, f.Target)
	}
	chosen := candidates[f.Pick%uint64(len(candidates))]
	f.Nodes = []string{chosen}
	if f.Kind == FaultSplit {
		size := max((len(all)-1)/2, 1)
		i := slices.Index(all, chosen)
		for j := 1; len(f.Nodes) < size && j < len(all); j++ {
			f.Nodes = append(f.Nodes, all[(i+j)%len(all)])
		}
		slices.Sort(f.Nodes)
	}
	return nil
}

// Link is a directed link between two nodes: messages From → To.
type Link struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// CutLinks returns the directed links a network fault cuts (messages on
// them are dropped), given every node of the cluster: isolate, flap (its
// "cut" phase) and lag cut Nodes off both ways; split cuts Nodes from the
// rest both ways; bridge cuts the two halves apart; oneway cuts one
// direction. Other kinds cut nothing. Links are sorted.
func (f *Fault) CutLinks(all []string) []Link {
	all = slices.Sorted(slices.Values(all))
	var links []Link
	both := func(a, b []string) {
		for _, x := range a {
			for _, y := range b {
				if x != y {
					links = append(links, Link{x, y}, Link{y, x})
				}
			}
		}
	}
	others := func(side []string) []string {
		return slices.DeleteFunc(slices.Clone(all), func(n string) bool { return slices.Contains(side, n) })
	}
	switch f.Kind {
	case FaultIsolate, FaultFlap, FaultLag, FaultSplit:
		both(f.Nodes, others(f.Nodes))
	case FaultBridge:
		if len(f.Nodes) == 0 {
			return nil
		}
		rest := others(f.Nodes[:1])
		both(rest[:len(rest)/2], rest[len(rest)/2:])
	case FaultOneWay:
		if len(f.Nodes) == 0 {
			return nil
		}
		t := f.Nodes[0]
		for _, o := range others(f.Nodes[:1]) {
			if f.Params["dir"] == "out" {
				links = append(links, Link{t, o})
			} else {
				links = append(links, Link{o, t})
			}
		}
	}
	slices.SortFunc(links, func(a, b Link) int {
		if c := strings.Compare(a.From, b.From); c != 0 {
			return c
		}
		return strings.Compare(a.To, b.To)
	})
	return slices.Compact(links)
}

// ScheduleOptions shape a schedule. Zero fields take the defaults noted.
type ScheduleOptions struct {
	// Groups that role targets may name. Default metadata-0, data-0,
	// offset-0.
	Groups []string
	// Warmup: quiet time before the first fault. Default total/8, clamped
	// to [1s, 10s].
	Warmup time.Duration
	// Cooldown: quiet time after the last fault heals. Default like Warmup.
	Cooldown time.Duration
	// MinFault, MaxFault bound each fault's duration. Default 2s and 5s.
	MinFault, MaxFault time.Duration
	// MinGap, MaxGap bound the quiet time between two faults. Default 1s
	// and 3s.
	MinGap, MaxGap time.Duration
	// MemberOps are the membership changes to draw from. Default
	// remove-readd and wipe-readd ("add" needs a nemesis with a spare).
	MemberOps []string
	// ScaleOps are the scale operations to draw from. Default ScaleOps.
	ScaleOps []string
	// CrashPoints are the crash point names to draw from. Default none:
	// Params["point"] is left empty and the nemesis chooses.
	CrashPoints []string
	// MaxFaults caps the number of faults (0: as many as fit).
	MaxFaults int
	// MaxReshards caps the reshard faults (each one adds a group for
	// good); once reached, the kind leaves the rotation. Default 2.
	MaxReshards int
}

func (o ScheduleOptions) withDefaults(total time.Duration) ScheduleOptions {
	if len(o.Groups) == 0 {
		o.Groups = []string{metapb.MetadataGroup, metapb.DataGroup(0), metapb.OffsetGroup(0)}
	}
	quiet := min(max(total/8, time.Second), 10*time.Second)
	if o.Warmup <= 0 {
		o.Warmup = quiet
	}
	if o.Cooldown <= 0 {
		o.Cooldown = quiet
	}
	if o.MinFault <= 0 {
		o.MinFault = 2 * time.Second
	}
	if o.MaxFault < o.MinFault {
		o.MaxFault = max(5*time.Second, o.MinFault)
	}
	if o.MinGap <= 0 {
		o.MinGap = time.Second
	}
	if o.MaxGap < o.MinGap {
		o.MaxGap = max(3*time.Second, o.MinGap)
	}
	if len(o.MemberOps) == 0 {
		o.MemberOps = []string{"remove-readd", "wipe-readd"}
	}
	if len(o.ScaleOps) == 0 {
		o.ScaleOps = ScaleOps
	}
	if o.MaxReshards <= 0 {
		o.MaxReshards = 2
	}
	return o
}

// Schedule lays out faults of the given kinds over total, deterministically
// for a seed: after a warm-up, faults one at a time (never overlapping),
// each followed by a quiet gap, until the cool-down. Kinds are played in a
// seeded shuffled order, cycling, so that every kind appears when there is
// room for len(kinds) faults (reshard at most MaxReshards times).
// Targets, parameters and picks are drawn from the same seed. The same
// seed, kinds, total and options give the same schedule.
func Schedule(seed int64, kinds []FaultKind, total time.Duration, opts ScheduleOptions) []Fault {
	if len(kinds) == 0 {
		return nil
	}
	o := opts.withDefaults(total)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6e656d65736973)) // "nemesis"
	between := func(lo, hi time.Duration) time.Duration {
		if hi <= lo {
			return lo
		}
		// Whole milliseconds keep schedules readable.
		return lo + time.Duration(rng.Int64N(int64((hi-lo)/time.Millisecond)+1))*time.Millisecond
	}
	var order []FaultKind
	var faults []Fault
	reshards := 0
	at := o.Warmup
	end := total - o.Cooldown
	for id := 1; o.MaxFaults == 0 || len(faults) < o.MaxFaults; id++ {
		d := between(o.MinFault, o.MaxFault)
		if at+d > end {
			if at+o.MinFault > end {
				break
			}
			d = end - at
		}
		if reshards >= o.MaxReshards {
			kinds = slices.DeleteFunc(slices.Clone(kinds), func(k FaultKind) bool { return k == FaultReshard })
			order = slices.DeleteFunc(order, func(k FaultKind) bool { return k == FaultReshard })
			if len(kinds) == 0 {
				break
			}
		}
		if len(order) == 0 {
			order = slices.Clone(kinds)
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		kind := order[0]
		order = order[1:]
		if kind == FaultReshard {
			reshards++
		}
		f := Fault{ID: id, Kind: kind, Start: at, Duration: d}
		f.Target, f.Params = drawFault(rng, kind, d, o)
		f.Pick = rng.Uint64()
		faults = append(faults, f)
		at += d + between(o.MinGap, o.MaxGap)
	}
	return faults
}

// drawFault draws a target and parameters for kind.
func drawFault(rng *rand.Rand, kind FaultKind, d time.Duration, o ScheduleOptions) (Target, map[string]string) {
	group := o.Groups[rng.IntN(len(o.Groups))]
	role := func(weights ...int) Target { // leader, follower, random
		targets := []Target{LeaderOf(group), FollowerOf(group), TargetRandom}
		sum := 0
		for _, w := range weights {
			sum += w
		}
		n := rng.IntN(sum)
		for i, w := range weights {
			if n < w {
				return targets[i]
			}
			n -= w
		}
		return TargetRandom
	}
	ms := func(lo, hi int) string { return (time.Duration(lo+rng.IntN(hi-lo+1)) * time.Millisecond).String() }
	switch kind {
	case FaultKill, FaultPause, FaultIsolate:
		return role(2, 1, 1), nil
	case FaultKillAll:
		return TargetAll, nil
	case FaultSplit, FaultBridge:
		return role(2, 0, 1), nil
	case FaultOneWay:
		dir := "in"
		if rng.IntN(2) == 0 {
			dir = "out"
		}
		return role(2, 0, 1), map[string]string{"dir": dir}
	case FaultFlap:
		return role(1, 0, 1), map[string]string{"period": ms(1000, 3000)}
	case FaultDelay:
		t := role(1, 0, 1)
		if rng.IntN(3) == 0 {
			t = TargetAll
		}
		return t, map[string]string{
			"delay":  ms(20, 200),
			"jitter": ms(0, 50),
			"loss":   strconv.FormatFloat(float64(rng.IntN(21))/100, 'f', 2, 64),
		}
	case FaultMember:
		return role(1, 2, 0), map[string]string{"op": o.MemberOps[rng.IntN(len(o.MemberOps))]}
	case FaultTransfer:
		return LeaderOf(group), map[string]string{"group": group, "every": ms(200, 1000)}
	case FaultMove:
		return role(2, 1, 0), map[string]string{"group": group}
	case FaultScale:
		return role(1, 2, 0), map[string]string{"op": o.ScaleOps[rng.IntN(len(o.ScaleOps))]}
	case FaultLag:
		return FollowerOf(group), map[string]string{"group": group}
	case FaultReshard:
		// The group and point follow the keys written (PickReshard).
		return TargetRandom, nil
	case FaultCrashpoint:
		p := map[string]string{"point": ""}
		if len(o.CrashPoints) > 0 {
			p["point"] = o.CrashPoints[rng.IntN(len(o.CrashPoints))]
		}
		return role(1, 1, 1), p
	}
	if t, p, ok := drawOpsFault(rng, kind, group); ok {
		return t, p
	}
	return TargetRandom, nil
}

// WriteFaults writes faults as JSON lines, one Fault per line.
func WriteFaults(w io.Writer, faults []Fault) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for i := range faults {
		if err := enc.Encode(&faults[i]); err != nil {
			return err
		}
	}
	return nil
}

// ReadFaults reads JSON lines written by WriteFaults.
func ReadFaults(r io.Reader) ([]Fault, error) {
	dec := json.NewDecoder(r)
	var out []Fault
	for {
		var f Fault
		err := dec.Decode(&f)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("verify: faults: %w", err)
		}
		out = append(out, f)
	}
}

// SaveFaults writes faults to path.
func SaveFaults(path string, faults []Fault) error {
	return writeFile(path, func(w io.Writer) error { return WriteFaults(w, faults) })
}

// LoadFaults reads faults saved by SaveFaults.
func LoadFaults(path string) ([]Fault, error) { return readFile(path, ReadFaults) }
