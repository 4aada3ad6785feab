package metanode

import (
	"context"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
)

// RunWhileLeading registers a task that runs while this node leads group:
// it starts once the term marker of a new term is applied (the node's view
// is then current) and its ctx ends the moment leadership is lost. A term's
// tasks start only after the previous term's tasks have returned. The
// controller is started this way on metadata-0. Register before Start.
func (n *Node) RunWhileLeading(group string, task func(ctx context.Context)) {
	n.tasksMu.Lock()
	defer n.tasksMu.Unlock()
	n.tasks[group] = append(n.tasks[group], task)
}

// ProposeMetadata proposes an op in metadata-0 on this node, which must
// lead it (for leader-only work such as the controller's).
func (n *Node) ProposeMetadata(ctx context.Context, op *logpb.Op) (*logpb.Result, error) {
	g, err := n.group(metapb.MetadataGroup)
	if err != nil {
		return nil, err
	}
	if !g.isLeader() {
		return nil, g.notLeader()
	}
	return g.proposeLocal(ctx, op)
}

// Metadata returns this node's replica of metadata-0.
func (n *Node) Metadata() (*sm.Machine, error) { return n.Machine(metapb.MetadataGroup) }

// LeadsMetadata reports whether this node leads metadata-0 in a term whose
// marker it has applied.
func (n *Node) LeadsMetadata() bool {
	g, err := n.group(metapb.MetadataGroup)
	return err == nil && g.ready()
}

// MetadataLeader returns the id and address of metadata-0's leader as
// this node knows it.
func (n *Node) MetadataLeader() (id, addr string) {
	g, err := n.group(metapb.MetadataGroup)
	if err != nil {
		return "", ""
	}
	return g.leader()
}

// Leaders returns each group's leader as this node sees it, and the voters
// of metadata-0.
func (n *Node) Leaders() (map[string]string, []string) {
	out := map[string]string{}
	for _, g := range n.hostedGroups() {
		if id, _ := g.leader(); id != "" {
			out[g.name] = id
		}
	}
	var voters []string
	if g, err := n.group(metapb.MetadataGroup); err == nil {
		for _, s := range g.voters() {
			voters = append(voters, string(s.ID))
		}
	}
	return out, voters
}
