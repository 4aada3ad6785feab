package metanode_test

import (
	"testing"
	"time"

	"github.com/metamq/meta/metanode"
)

// The default raft timings hold together (Validate checks that leaders
// heartbeat often enough for the followers' timeout and their own lease),
// and leaders heartbeat at the slower, idle-friendly pace while followers
// keep the 1 s timeout that bounds failover.
func TestDefaultRaftTimings(t *testing.T) {
	cfg := metanode.DefaultConfig()
	cfg.ID, cfg.DataDir = "n1", t.TempDir()
	cfg.InitialCluster = []metanode.Peer{{ID: "n1", Addr: cfg.ListenAddr}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("DefaultConfig: %v", err)
	}
	if cfg.HeartbeatTimeout != time.Second || cfg.LeaderHeartbeatTimeout != 2*time.Second || cfg.LeaderLeaseTimeout != time.Second {
		t.Fatalf("got heartbeat %v, leader heartbeat %v, lease %v; want 1s, 2s, 1s",
			cfg.HeartbeatTimeout, cfg.LeaderHeartbeatTimeout, cfg.LeaderLeaseTimeout)
	}
}
