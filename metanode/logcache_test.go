package metanode_test

import (
	"testing"

	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
)

// The raft log caches of a node's groups share NodeLogCacheBytes: with 14
// groups on every node (metadata-0, one offset and 12 data groups, RF 3 on
// 3 nodes), each cache holds at most a fourteenth of it, however large
// LogCacheBytes is.
func TestLogCachesShareTheNodeBudget(t *testing.T) {
	const budget = 14 << 20
	c := metanodetest.Start(t, metanodetest.Options{DataGroups: 12, Configure: func(cfg *metanode.Config) {
		cfg.NodeLogCacheBytes = budget
		cfg.LogCacheBytes = 8 << 20
	}})
	for _, id := range c.IDs() {
		n := c.Running(id)
		if got, want := n.LogCacheShareForTest(), budget/14; got != want {
			t.Errorf("%s: each log cache may hold %d bytes, want %d (the node's budget over its 14 groups)", id, got, want)
		}
	}
}
