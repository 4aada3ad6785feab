package chaos

import (
	"slices"
	"time"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify"
)

// HealAllowance is extra quiet time chaos puts after a fault of each kind,
// on top of the gap verify.Schedule drew, because healing it takes time in
// containers: a restarted node must open its database and report SERVING
// (about 1.5 s here), a whole cluster must also elect leaders, a re-added
// node must catch up and be promoted. verify plays faults at fixed start
// times and injects a fault at once when the previous heal overran, which
// would leave no "after" window for the activity checker (and, with it, no
// time for the cluster to show it recovered). Kinds not listed heal in
// well under a second.
var HealAllowance = map[verify.FaultKind]time.Duration{
	verify.FaultKill:    2 * time.Second,
	verify.FaultKillAll: 4 * time.Second,
	verify.FaultPause:   time.Second,
	verify.FaultMember:  10 * time.Second,
	verify.FaultMove:    10 * time.Second,
	verify.FaultScale:   15 * time.Second,
	verify.FaultLag:     3 * time.Second,
}

// Schedule is verify.Schedule with every fault moved later by the heal
// allowances of the faults before it. Faults that would then end after
// total minus the cool-down are dropped. Member faults take the operations
// of opts.MemberOps in turn (from an offset the seed picks) rather than at
// random, so that a run with as many member faults as operations plays
// each one. Like verify.Schedule, it depends only on its arguments: the
// same seed gives the same schedule.
func Schedule(seed int64, kinds []verify.FaultKind, total time.Duration, opts verify.ScheduleOptions) []verify.Fault {
	faults := verify.Schedule(seed, kinds, total, opts)
	if ops := opts.MemberOps; len(ops) > 0 {
		next := int(uint64(seed) % uint64(len(ops)))
		for i := range faults {
			if faults[i].Kind == verify.FaultMember {
				faults[i].Params = map[string]string{"op": ops[next%len(ops)]}
				next++
			}
		}
	}
	cooldown := opts.Cooldown
	if cooldown <= 0 {
		// verify's default, restated: total/8 within [1s, 10s].
		cooldown = min(max(total/8, time.Second), 10*time.Second)
	}
	end := total - cooldown
	var shift time.Duration
	out := faults[:0]
	for _, f := range faults {
		f.Start += shift
		if f.Start+f.Duration > end {
			break
		}
		out = append(out, f)
		shift += HealAllowance[f.Kind]
	}
	return out
}

// aimable are the kinds whose target is one node's role, which
// AimAtController can point at the controller's node.
var aimable = []verify.FaultKind{
	verify.FaultKill, verify.FaultPause, verify.FaultIsolate, verify.FaultSplit,
	verify.FaultBridge, verify.FaultOneWay, verify.FaultFlap, verify.FaultDelay,
}

// CanAimAtController reports whether AimAtController can aim a fault of
// kind k (RunOptions.AtController): one whose target is one node's role.
func CanAimAtController(k verify.FaultKind) bool { return slices.Contains(aimable, k) }

// AimAtController aims the first fault of each of kinds in faults at the
// leader of metadata-0, the node that runs the controller: the node whose
// crash, pause or isolation makes the controller fail over while brokers
// heartbeat, and whose new leader must give every broker a full timeout
// of grace. Later faults of those kinds keep the target the schedule
// drew, so followers and random nodes are hit too. It changes faults in
// place and returns it.
func AimAtController(faults []verify.Fault, kinds []verify.FaultKind) []verify.Fault {
	done := map[verify.FaultKind]bool{}
	for i := range faults {
		k := faults[i].Kind
		if done[k] || !slices.Contains(kinds, k) {
			continue
		}
		done[k] = true
		faults[i].Target = verify.LeaderOf(metapb.MetadataGroup)
	}
	return faults
}
