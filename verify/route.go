package verify

import (
	"github.com/metamq/meta/rpc/metapb"
)

// DataRoute is how the sessions and watch checkers group routing keys
// into data groups. Splits only divide ranges (a range never moves to a
// group that existed before, and groups never merge), so the keys a group
// owns at the end of a run shared one group, and so one revision
// sequence, at every moment of the run: the checkers partition by the
// cluster's final map when the run read one (Final), and otherwise by
// the group count the cluster was created with (Count, routing by
// metapb.DataGroupFor).
type DataRoute struct {
	Count int
	// Final is the data groups' map when the run ended, sorted.
	Final metapb.RangeMap
}

// Group returns the group key belongs to.
func (r DataRoute) Group(key []byte) string {
	if len(r.Final) > 0 {
		if rg, ok := r.Final.Lookup(metapb.RouteHash(key)); ok {
			return rg.Group
		}
	}
	if r.Count <= 0 {
		return metapb.DataGroup(0)
	}
	return metapb.DataGroupFor(key, r.Count)
}

// dataRoute is the run's DataRoute.
func (res *Result) dataRoute() DataRoute {
	return DataRoute{Count: res.Settings.DataGroups, Final: metapb.RangeMap(res.DataRanges).Sorted()}
}

// finalDataRanges is the data groups' map in gs, or nil when a data group
// records no ranges (a cluster routing by count).
func finalDataRanges(gs *metapb.ListGroupsResponse) []metapb.Range {
	var out []metapb.Range
	for _, g := range gs.GetGroups() {
		if g.Kind != "data" || g.State == "deleting" {
			continue
		}
		if len(g.Ranges) == 0 {
			return nil
		}
		out = append(out, rangesOf(g.Group, g.Ranges)...)
	}
	return out
}
