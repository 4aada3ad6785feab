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

// DamageForTest writes key (raw, in the state's user range) into this
// node's replica of group behind raft's back, as a damaged file or a bug
// would, for tests of the hash checks.
func (n *Node) DamageForTest(group string, key, value []byte) error {
	sp, err := n.db.Data(group)
	if err != nil {
		return err
	}
	return sp.Put(key, value, false)
}
