package metanode

import (
	"fmt"
	"testing"

	"github.com/metamq/meta/rpc/metapb"
)

// A new cluster's groups: RF distinct replicas each (all members when
// fewer), metadata-0 on the first members, counts per member within one of
// each other, and the same answer whatever the order of the member list.
func TestInitialDirectory(t *testing.T) {
	for _, tc := range []struct{ nodes, k, m, rf, mdRF int }{
		{3, 1, 1, 3, 3}, {1, 1, 1, 3, 3}, {5, 2, 12, 3, 5}, {6, 1, 12, 3, 3}, {4, 3, 3, 2, 3},
	} {
		var members []string
		for i := range tc.nodes {
			members = append(members, fmt.Sprintf("n%d", i+1))
		}
		groups := metapb.Groups(tc.k, tc.m)
		d := initialDirectory(members, groups, tc.rf, tc.mdRF)
		count := map[string]int{}
		for _, g := range d {
			want := min(tc.rf, tc.nodes)
			if g.Name == metapb.MetadataGroup {
				want = min(tc.mdRF, tc.nodes)
			}
			seen := map[string]bool{}
			for _, r := range g.Replicas {
				if seen[r.Node] {
					t.Fatalf("%+v: %s has two replicas on %s", tc, g.Name, r.Node)
				}
				seen[r.Node] = true
				if g.Name != metapb.MetadataGroup {
					count[r.Node]++
				}
			}
			if len(g.Replicas) != want {
				t.Fatalf("%+v: %s has %d replicas, want %d", tc, g.Name, len(g.Replicas), want)
			}
		}
		lo, hi := 1<<30, 0
		for _, id := range members {
			lo, hi = min(lo, count[id]), max(hi, count[id])
		}
		if hi-lo > 1 {
			t.Fatalf("%+v: replicas per member %v differ by more than one", tc, count)
		}
		reversed := make([]string, len(members))
		for i, id := range members {
			reversed[len(members)-1-i] = id
		}
		if fmt.Sprint(initialDirectory(reversed, groups, tc.rf, tc.mdRF)) != fmt.Sprint(d) {
			t.Fatalf("%+v: the member list's order changed the placement", tc)
		}
	}
}
