package metanode

import (
	"fmt"
)

// checkTLSIdentity makes the certificate name the node: a node's own id
// comes from its certificate, and a config naming another id is refused.
func checkTLSIdentity(cfg *Config) error {
	if cfg.TLS == nil {
		return nil
	}
	id := cfg.TLS.ID()
	if cfg.ID == "" {
		cfg.ID = id
	}
	if cfg.ID != id {
		return fmt.Errorf("metanode: ID %q differs from the member id %q its TLS certificate names", cfg.ID, id)
	}
	return nil
}

// peerAllowed says whether a certificate naming id may make raft and peer
// calls to n: a server in the configuration of any group n hosts, a
// member in the directory n holds, or an initial member. A node hosting no
// group yet (joining, its data directory empty), or a replica its group's
// leader has not filled yet, trusts any certificate of the cluster's CA,
// since it cannot know its peers before the leader contacts it.
func (n *Node) peerAllowed(id string) bool {
	for _, p := range n.cfg.InitialCluster {
		if p.ID == id {
			return true
		}
	}
	if n.Directory().Member(id) != nil {
		return true
	}
	groups := n.hostedGroups()
	if len(groups) == 0 {
		return true
	}
	for _, g := range groups {
		if g.raft == nil {
			continue
		}
		conf := g.configuration()
		if len(conf) == 0 {
			// A replica created for a join or a move, waiting for its
			// group's leader to fill it: trusted as a node hosting
			// nothing trusts, or that leader could never reach it.
			return true
		}
		for _, s := range conf {
			if string(s.ID) == id {
				return true
			}
		}
	}
	return false
}

// PeerAllowed says whether a certificate naming member id is one n
// trusts as a member (see peerAllowed): the public API's authentication
// (rpc/server.Auth.IsMember) asks it of member certificates.
func (n *Node) PeerAllowed(id string) bool { return n.peerAllowed(id) }
