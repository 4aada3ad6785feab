package verify

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/metamq/meta/rpc/metapb"
)

// touched returns the KV keys and the offsets partitions (grouped by
// consumer group) that the workload part of a history names.
func touched(ops []Op) (keys []string, groups map[string][]TopicPartition) {
	ks := map[string]bool{}
	tps := map[TopicPartition]bool{}
	for i := range ops {
		op := &ops[i]
		if op.Final {
			continue
		}
		switch op.Kind {
		case OpPut, OpGet, OpDelete, OpCAS:
			ks[op.Input.Key] = true
		case OpCommit:
			for _, c := range op.Input.Offsets {
				tps[c.TP()] = true
			}
		case OpFetch:
			for _, tp := range op.Input.Partitions {
				tps[tp] = true
			}
		}
	}
	for k := range ks {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	groups = map[string][]TopicPartition{}
	for _, tp := range sortedTPs(tps) {
		groups[tp.Group] = append(groups[tp.Group], tp)
	}
	return keys, groups
}

// FinalReads reads, after every fault healed, each KV key and each offsets
// partition the history touched, with linearizable reads through s (use a
// session whose target reaches every node). The reads are recorded, marked
// Final, and so checked by the models like any other op: an acknowledged
// write that a final read does not reflect is a lost write.
//
// A failed read is retried, every retry apart, until it succeeds or ctx
// ends; FinalReads returns the keys and consumer groups it could not read.
// The final-reads checker (CheckFinalReads) fails on those.
func FinalReads(ctx context.Context, s *Session, ops []Op, retry time.Duration) (missed []string) {
	s.final = true
	defer func() { s.final = false }()
	keys, groups := touched(ops)
	try := func(read func() Op) bool {
		for {
			if read().Outcome == OutcomeOK {
				return true
			}
			if !Sleep(ctx, retry) {
				return false
			}
		}
	}
	for _, k := range keys {
		if !try(func() Op { return s.Get(ctx, k, false) }) {
			missed = append(missed, "key "+k)
		}
	}
	names := make([]string, 0, len(groups))
	for g := range groups {
		names = append(names, g)
	}
	slices.Sort(names)
	for _, g := range names {
		if !try(func() Op { return s.Fetch(ctx, groups[g], false) }) {
			missed = append(missed, "consumer group "+g)
		}
	}
	return missed
}

// CheckFinalReads checks, from the history alone, that every key and
// every offsets partition the workload touched got a successful final
// read. Without that read a lost write could go unnoticed.
func CheckFinalReads(ops []Op) CheckResult {
	r := CheckResult{Checker: CheckerFinal, Verdict: Valid}
	keys, groups := touched(ops)
	readKeys := map[string]bool{}
	readTPs := map[TopicPartition]bool{}
	for i := range ops {
		op := &ops[i]
		if !op.Final || op.Outcome != OutcomeOK || op.Input.Stale {
			continue
		}
		r.Ops++
		switch op.Kind {
		case OpGet:
			readKeys[op.Input.Key] = true
		case OpFetch:
			for _, tp := range op.Input.Partitions {
				readTPs[tp] = true
			}
		}
	}
	for _, k := range keys {
		r.Partitions++
		if !readKeys[k] {
			r.Failing = append(r.Failing, "key "+k)
		}
	}
	for _, tps := range groups {
		for _, tp := range tps {
			r.Partitions++
			if !readTPs[tp] {
				r.Failing = append(r.Failing, "partition "+tp.String())
			}
		}
	}
	slices.Sort(r.Failing)
	if len(r.Failing) > 0 {
		r.Verdict = Invalid
		r.Details = fmt.Sprintf("%d of %d keys and partitions have no successful final read", len(r.Failing), r.Partitions)
	}
	return r
}

// Inspector is the part of the public client the convergence check needs.
type Inspector interface {
	StatusReader
	StateHash(ctx context.Context, endpoint, group string) (*metapb.StateHashResponse, error)
}

// Converge polls the StateHash of every replica of every group until, for
// each group, its replicas report the same applied index and the same
// hash, or ctx ends. endpoints maps node ids to client endpoints. When
// groups is empty they are learned from the directory (the controller's
// ListGroups, with each group's replica nodes) if insp can read it, else
// from the nodes' Status (group counts, every node holding every group).
//
// It fails naming each group that did not converge and what each replica
// reported last.
func Converge(ctx context.Context, insp Inspector, endpoints map[string]string, groups []string, poll time.Duration) CheckResult {
	start := time.Now()
	r := CheckResult{Checker: CheckerConvergence, Verdict: Valid, Recorded: true}
	nodes := make([]string, 0, len(endpoints))
	for id := range endpoints {
		nodes = append(nodes, id)
	}
	slices.Sort(nodes)
	holders := map[string][]string{} // group → its replicas' nodes, from the directory
	last := map[string]string{}      // group → what the nodes reported last
	pending := slices.Clone(groups)
	for {
		if len(groups) == 0 {
			groups, holders = learnGroups(ctx, insp, endpoints, nodes)
			pending = slices.Clone(groups)
		}
		if len(groups) > 0 {
			var still []string
			for _, g := range pending {
				on := nodes
				if h := holders[g]; len(h) > 0 {
					on = h
				}
				ok, report := converged(ctx, insp, endpoints, on, g)
				last[g] = report
				if !ok {
					still = append(still, g)
				}
			}
			pending = still
			if len(pending) == 0 {
				break
			}
		}
		if !Sleep(ctx, poll) {
			break
		}
	}
	r.Partitions = len(groups)
	r.Elapsed = time.Since(start)
	if len(groups) == 0 {
		r.Verdict = Invalid
		r.Failing = []string{"cluster"}
		r.Details = "no node answered Status: groups unknown"
		return r
	}
	if len(pending) > 0 {
		r.Verdict = Invalid
		r.Failing = pending
		var details []string
		for _, g := range pending {
			details = append(details, fmt.Sprintf("%s did not converge in %s: %s", g, r.Elapsed.Round(time.Millisecond), last[g]))
		}
		r.Details = strings.Join(details, "; ")
	}
	return r
}

// learnGroups lists the groups: from the directory with their replicas'
// nodes (those among nodes), or, when the directory cannot be read, from
// any node's Status (no holders: every node holds every group).
func learnGroups(ctx context.Context, insp Inspector, endpoints map[string]string, nodes []string) ([]string, map[string][]string) {
	if pr, ok := insp.(PlacementReader); ok {
		if gs, err := pr.ListGroups(ctx); err == nil && len(gs.Groups) > 0 {
			var groups []string
			holders := map[string][]string{}
			for _, g := range gs.Groups {
				groups = append(groups, g.Group)
				for _, r := range g.Replicas {
					if slices.Contains(nodes, r.Node) {
						holders[g.Group] = append(holders[g.Group], r.Node)
					}
				}
				slices.Sort(holders[g.Group])
			}
			return groups, holders
		}
	}
	for _, id := range nodes {
		st, err := insp.Status(ctx, endpoints[id])
		if err == nil && st.DataGroups > 0 {
			return metapb.Groups(int(st.OffsetGroups), int(st.DataGroups)), nil
		}
	}
	return nil, nil
}

// converged asks every node for group's hash once.
func converged(ctx context.Context, insp Inspector, endpoints map[string]string, nodes []string, group string) (bool, string) {
	var parts []string
	ok := true
	var first *metapb.StateHashResponse
	for _, id := range nodes {
		h, err := insp.StateHash(ctx, endpoints[id], group)
		if err != nil {
			ok = false
			parts = append(parts, fmt.Sprintf("%s: %v", id, err))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s applied %d hash %016x", id, h.AppliedIndex, h.Hash))
		if first == nil {
			first = h
		} else if h.AppliedIndex != first.AppliedIndex || h.Hash != first.Hash {
			ok = false
		}
	}
	return ok, strings.Join(parts, ", ")
}

// Sleep waits for d or for ctx to end, and reports whether d passed. It
// paces polling loops against a live cluster (here, in chaos and in
// metanodetest); tests never use it to synchronise.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
