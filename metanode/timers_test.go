package metanode_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/metamq/meta/controller"
	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/metapb"
)

// Change-log compaction catches up in one round when far behind: it
// proposes chunk after chunk (up to its bound per round) instead of one
// chunk per round, which reclaimed 4,000 revisions/s at the default timer
// and fell behind a sustained put rate. Chunks are made small here so
// that a few hundred puts stand for a long backlog; the timers run once
// an hour, so only the test's rounds compact.
func TestEventCompactionCatchesUpInOneRound(t *testing.T) {
	const chunk, keep = 20, 10
	metanode.SetCompactChunkForTest(t, chunk)
	c := metanodetest.Start(t, metanodetest.Options{Configure: func(cfg *metanode.Config) {
		cfg.TimerInterval = time.Hour
		cfg.EventRetention = time.Nanosecond
		cfg.EventRetentionMin = keep
	}, Controller: func(cfg *controller.Config) {
		cfg.SpreadInterval = 0 // the leader stays where the test found it
	}})
	g := metapb.DataGroupFor([]byte("k"), 1)
	leader := c.WaitLeader(g, 30*time.Second)
	cl := c.Client(leader)
	const puts = chunk*metanode.CompactChunksPerRound + 5*chunk
	for i := range puts {
		put(t, cl, fmt.Sprintf("k%d", i), "v")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := c.Running(leader)
	rounds := []int{}
	for range 2 {
		k, err := n.CompactEventsForTest(ctx, g)
		if err != nil {
			t.Fatal(err)
		}
		rounds = append(rounds, k)
	}
	if rounds[0] != metanode.CompactChunksPerRound || rounds[1] == 0 || rounds[1] >= metanode.CompactChunksPerRound {
		t.Fatalf("compaction entries proposed per round: got %v, want %d (the bound) then between 1 and %d (the rest)",
			rounds, metanode.CompactChunksPerRound, metanode.CompactChunksPerRound-1)
	}
	fsm := n.FSM(g)
	oldest, err := fsm.OldestEvent()
	if err != nil || oldest == nil {
		t.Fatalf("oldest event: %v, %v", oldest, err)
	}
	if want := fsm.Revision() - keep; oldest.Revision < want {
		t.Fatalf("after two rounds the oldest event is at revision %d, want at least %d (revision %d, keep %d)", oldest.Revision, want, fsm.Revision(), keep)
	}
}
