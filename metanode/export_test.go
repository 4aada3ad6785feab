package metanode

import "github.com/metamq/meta/sm"

// FSM returns the state machine of a group on this node, for tests.
func (n *Node) FSM(group string) *sm.Machine {
	g, err := n.group(group)
	if err != nil {
		return nil
	}
	return g.fsm
}
