package verify

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
)

// CheckerOwnership judges which group served each key, from the response
// headers a history records (Output.Group and Output.RangeVersion: the
// version of the serving group's own ownership of the key, read by the
// server in the same view as the data). For each key:
//
//   - successful responses that carry the same range version name exactly
//     one group (a version is given to one owner of a range: two groups
//     answering at one version means both served the key at once);
//   - the version never goes backwards in real time: an operation called
//     after another one on the key returned carries at least that one's
//     version (an owner that gave the range away must not answer again).
//
// Only successful get, put, delete and cas responses with a version count
// (Ops is how many were judged), stale reads excepted (a replica that has
// not applied the split yet may serve them at the older version): a version of 0 is unknown (an older
// server, a group that serves by count, a read the client batched with
// others) and is skipped. Judged of Total are the keys with a versioned
// response of the keys with a successful one; a history without a single
// versioned response is Valid with nothing judged.
const CheckerOwnership = "ownership"

// ownedOp is one judged response of one key.
type ownedOp struct {
	index        int
	call, ret    int64
	group        string
	version      uint64
	node, kindOf string
}

// CheckOwnership runs the ownership checker over a history.
func CheckOwnership(ops []Op) CheckResult {
	r := CheckResult{Checker: CheckerOwnership, Verdict: Valid}
	byKey := map[string][]ownedOp{}
	seen := map[string]bool{}
	for _, op := range ops {
		switch op.Kind {
		case OpGet, OpPut, OpDelete, OpCAS:
		default:
			continue
		}
		if op.Outcome != OutcomeOK || op.Output == nil || op.Input.Stale {
			continue
		}
		seen[op.Input.Key] = true
		if op.Output.RangeVersion == 0 || op.Output.Group == "" {
			continue
		}
		r.Ops++
		byKey[op.Input.Key] = append(byKey[op.Input.Key], ownedOp{index: op.Index, call: op.Call, ret: op.Return,
			group: op.Output.Group, version: op.Output.RangeVersion, node: op.Output.Node, kindOf: string(op.Kind)})
	}
	r.Partitions, r.Judged, r.Total = len(byKey), len(byKey), len(seen)
	var problems []string
	for _, key := range slices.Sorted(maps.Keys(byKey)) {
		if p := ownershipProblems(key, byKey[key]); len(p) > 0 {
			r.Failing = append(r.Failing, key)
			problems = append(problems, p...)
		}
	}
	if len(problems) > 0 {
		r.Verdict = Invalid
	}
	r.Details = detailsWith([]string{fmt.Sprintf("%d responses carried a range version, on %d of %d keys", r.Ops, r.Judged, r.Total)}, problems)
	return r
}

// ownershipProblems judges one key's responses.
func ownershipProblems(key string, ops []ownedOp) []string {
	var out []string
	// One group per version.
	first := map[uint64]ownedOp{}
	named := map[uint64]bool{}
	for _, o := range ops {
		f, ok := first[o.version]
		switch {
		case !ok:
			first[o.version] = o
		case f.group != o.group && !named[o.version]:
			named[o.version] = true
			out = append(out, fmt.Sprintf("%s: range version %d named by %s (op %d, %s on %s) and %s (op %d, %s on %s)",
				key, o.version, f.group, f.index, f.kindOf, f.node, o.group, o.index, o.kindOf, o.node))
		}
	}
	// Versions never go backwards after a response returned: sweep the
	// ops by call time, knowing the highest version among those that
	// returned before the call.
	byCall := slices.Clone(ops)
	slices.SortFunc(byCall, func(a, b ownedOp) int { return cmp.Compare(a.call, b.call) })
	byRet := slices.Clone(ops)
	slices.SortFunc(byRet, func(a, b ownedOp) int { return cmp.Compare(a.ret, b.ret) })
	j, backwards := 0, 0
	var high *ownedOp
	for _, o := range byCall {
		for ; j < len(byRet) && byRet[j].ret < o.call; j++ {
			if high == nil || byRet[j].version > high.version {
				high = &byRet[j]
			}
		}
		if high != nil && o.version < high.version {
			backwards++
			if backwards <= 3 {
				out = append(out, fmt.Sprintf("%s: op %d (%s, %s on %s) carried range version %d after op %d (%s on %s) had returned version %d",
					key, o.index, o.kindOf, o.group, o.node, o.version, high.index, high.group, high.node, high.version))
			}
		}
	}
	if backwards > 3 {
		out = append(out, fmt.Sprintf("%s: … %d responses in all went back to an older range version", key, backwards))
	}
	return out
}
