package verify

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/metamq/meta/rpc/metapb"
)

// CheckerRanges judges, once every fault healed, the ranges the data and
// offset groups own by their own logs (each group's leader's Status:
// GroupStatus.owned, what its applied ownership record says, not the
// directory): for each kind, they tile the route hash space exactly once,
// and they are the directory's map (the controller's ListGroups), range
// by range, with the same versions. Groups that record no ranges (a
// cluster routing by count) are not judged; its partitions are the groups
// judged.
const CheckerRanges = "ranges"

// RangesReader is the part of the public client the ranges check needs.
type RangesReader interface {
	StatusReader
	ListGroups(ctx context.Context) (*metapb.ListGroupsResponse, error)
}

// RangesProblems says what is wrong with the groups' own ranges (owned:
// each group's leader's status of it; a group without one is reported)
// against the directory gs. One line per problem, sorted; none when all
// holds. judged counts the groups compared.
func RangesProblems(gs *metapb.ListGroupsResponse, owned map[string]*metapb.GroupStatus) (problems []string, judged int) {
	byKind := map[string]metapb.RangeMap{}
	for _, g := range gs.GetGroups() {
		if (g.Kind != "data" && g.Kind != "offset") || g.State == "deleting" {
			continue // a deleted group (an aborted split's child) owns nothing
		}
		if g.SplitChild != "" || g.State != "active" {
			problems = append(problems, fmt.Sprintf("%s: still changing (split %q phase %q, state %s)", g.Group, g.SplitChild, g.SplitPhase, g.State))
			continue
		}
		st := owned[g.Group]
		switch {
		case st == nil:
			problems = append(problems, g.Group+": no leader reported the group's own ranges")
			continue
		case len(g.Ranges) == 0 && (!st.OwnershipRecorded || st.OwnershipLegacy):
			continue // routed by count: nothing to judge
		case !st.OwnershipRecorded:
			problems = append(problems, g.Group+": its log records no ownership, the directory gives it ranges")
			continue
		case st.Splitting:
			problems = append(problems, g.Group+": its log says a split is still under way")
		}
		judged++
		own := rangesOf(g.Group, st.Owned)
		dir := rangesOf(g.Group, g.Ranges)
		if !slices.Equal(own, dir) {
			problems = append(problems, fmt.Sprintf("%s: owns %v by its own log, the directory maps %v to it", g.Group, own, dir))
		}
		byKind[g.Kind] = append(byKind[g.Kind], own...)
	}
	for _, kind := range []string{"data", "offset"} {
		m := byKind[kind]
		if len(m) == 0 {
			continue
		}
		slices.SortFunc(m, func(a, b metapb.Range) int {
			if a.Lo != b.Lo {
				return cmp.Compare(a.Lo, b.Lo)
			}
			return strings.Compare(a.Group, b.Group)
		})
		if err := m.Check(); err != nil {
			problems = append(problems, fmt.Sprintf("%s groups: the ranges they own by their own logs do not tile the hash space exactly once: %v (%v)", kind, err, m))
		}
	}
	slices.Sort(problems)
	return problems, judged
}

// rangesOf turns a group's key ranges into metapb ranges, sorted by Lo.
func rangesOf(group string, rs []*metapb.KeyRange) metapb.RangeMap {
	out := make(metapb.RangeMap, 0, len(rs))
	for _, r := range rs {
		out = append(out, metapb.Range{Lo: r.Lo, Hi: r.Hi, Group: group, Version: r.Version})
	}
	slices.SortFunc(out, func(a, b metapb.Range) int { return cmp.Compare(a.Lo, b.Lo) })
	return out
}

// LeaderStatuses asks every node (endpoints maps node ids to client
// endpoints; in the order of the ids) for its Status and keeps, per group,
// the status of the node that leads it with the highest term (as
// ResolveTarget finds leaders). A node that does not answer is passed
// over.
func LeaderStatuses(ctx context.Context, sr StatusReader, endpoints map[string]string) map[string]*metapb.GroupStatus {
	out := map[string]*metapb.GroupStatus{}
	for _, id := range slices.Sorted(maps.Keys(endpoints)) {
		st, err := sr.Status(ctx, endpoints[id])
		if err != nil {
			continue
		}
		for _, g := range st.Groups {
			if g.State == "Leader" && (out[g.Group] == nil || g.Term > out[g.Group].Term) {
				out[g.Group] = g
			}
		}
	}
	return out
}

// CheckRanges polls until RangesProblems finds nothing, or ctx ends: then
// it fails with the problems it saw last (a leader may apply the last
// step of a split a moment after the directory records it).
func CheckRanges(ctx context.Context, rr RangesReader, endpoints map[string]string, every time.Duration) CheckResult {
	r := CheckResult{Checker: CheckerRanges, Verdict: Valid, Recorded: true}
	var last []string
	last, r.Elapsed = settle(ctx, every, func() ([]string, error) {
		gs, err := rr.ListGroups(ctx)
		if err != nil {
			return nil, err
		}
		problems, judged := RangesProblems(gs, LeaderStatuses(ctx, rr, endpoints))
		r.Partitions, r.Judged, r.Total = judged, judged, len(gs.Groups)
		return problems, nil
	})
	if len(last) == 0 {
		return r
	}
	r.Verdict = Invalid
	for _, p := range last {
		what, _, _ := strings.Cut(p, ":")
		if !slices.Contains(r.Failing, what) {
			r.Failing = append(r.Failing, what)
		}
	}
	r.Details = fmt.Sprintf("not settled after %s: %s", r.Elapsed.Round(time.Millisecond), strings.Join(last, "; "))
	return r
}
