package verify

import (
	"slices"

	"github.com/metamq/meta/rpc/metapb"
)

// GroupReplicas returns the nodes holding group's replicas, in the order
// of the directory's listing gs, and whether gs lists the group.
func GroupReplicas(gs *metapb.ListGroupsResponse, group string) ([]string, bool) {
	g := gs.Find(group)
	if g == nil {
		return nil, false
	}
	var replicas []string
	for _, r := range g.Replicas {
		replicas = append(replicas, r.Node)
	}
	return replicas, true
}

// MoveTarget chooses the node that is to take a replica of a group whose
// replicas are on replicas: among nodes (in their order) those that hold
// none and that usable accepts (no fault stopped or removed them), the one
// pick chooses; "" when there is none (every usable node holds one).
func MoveTarget(nodes, replicas []string, usable func(node string) bool, pick uint64) string {
	var free []string
	for _, n := range nodes {
		if !slices.Contains(replicas, n) && usable(n) {
			free = append(free, n)
		}
	}
	if len(free) == 0 {
		return ""
	}
	return free[pick%uint64(len(free))]
}
