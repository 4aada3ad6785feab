package rocks

import (
	"sync"

	"github.com/hashicorp/raft"
)

// LogCache keeps the most recently stored raft log entries in memory, up to
// a byte budget, in front of a raft.LogStore: the leader reads entries it
// has just written to replicate them, and followers' FSMs read entries they
// have just stored. raft.LogCache bounds the number of entries instead, so
// its memory grows with the entry size (up to the proposal batch limit,
// megabytes) times the count; this one is bounded by what it holds.
//
// Entries enter the cache only after the store has taken them. DeleteRange
// empties the cache (it runs on log compaction and on conflicting
// suffixes, both rare).
type LogCache struct {
	store  raft.LogStore
	budget *LogCacheBudget // nil: max alone bounds it

	mu    sync.Mutex
	max   int
	logs  map[uint64]*raft.Log
	order []uint64 // indexes in insertion order, oldest first
	bytes int
}

// NewLogCache returns a cache of at most maxBytes (entry data and extensions)
// in front of store; maxBytes 0 caches nothing.
func NewLogCache(store raft.LogStore, maxBytes int) *LogCache {
	return &LogCache{store: store, max: maxBytes, logs: make(map[uint64]*raft.Log)}
}

// LogCacheBudget bounds the log caches of a node's groups together: each
// cache made by NewCache holds at most an equal share of the node's
// budget, and at most the per-cache limit, so that the memory the caches
// take is bounded by the budget rather than by the number of groups the
// node hosts (100 groups at 8 MiB each would be 800 MiB). Shares are
// recomputed as caches come (NewCache) and go (Close).
type LogCacheBudget struct {
	total, perCache int

	mu     sync.Mutex
	caches map[*LogCache]struct{}
}

// NewLogCacheBudget returns a budget of total bytes for all the caches it
// makes, each at most perCache.
func NewLogCacheBudget(total, perCache int) *LogCacheBudget {
	return &LogCacheBudget{total: total, perCache: perCache, caches: map[*LogCache]struct{}{}}
}

// NewCache returns a cache in front of store that holds a share of the
// budget; Close gives the share back.
func (b *LogCacheBudget) NewCache(store raft.LogStore) *LogCache {
	c := &LogCache{store: store, budget: b, logs: make(map[uint64]*raft.Log)}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.caches[c] = struct{}{}
	b.rebalance()
	return c
}

// Share returns what each cache of the budget may hold now.
func (b *LogCacheBudget) Share() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.share()
}

func (b *LogCacheBudget) share() int {
	if len(b.caches) == 0 {
		return b.perCache
	}
	return min(b.perCache, b.total/len(b.caches))
}

// rebalance gives every cache its share, evicting what a smaller share no
// longer holds. Called with b.mu held.
func (b *LogCacheBudget) rebalance() {
	share := b.share()
	for c := range b.caches {
		c.setMax(share)
	}
}

// Close empties the cache and, for a cache of a budget, gives its share
// back to the others. The store stays open.
func (c *LogCache) Close() {
	if c == nil {
		return
	}
	c.setMax(0)
	if b := c.budget; b != nil {
		b.mu.Lock()
		delete(b.caches, c)
		b.rebalance()
		b.mu.Unlock()
	}
}

// setMax sets the cache's limit and evicts down to it.
func (c *LogCache) setMax(max int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.max = max
	c.evict()
}

func logBytes(l *raft.Log) int { return len(l.Data) + len(l.Extensions) + 64 }

// GetLog returns the entry at index from the cache, or from the store.
func (c *LogCache) GetLog(index uint64, out *raft.Log) error {
	c.mu.Lock()
	l, ok := c.logs[index]
	c.mu.Unlock()
	if ok {
		*out = *l
		return nil
	}
	return c.store.GetLog(index, out)
}

// StoreLog stores one entry.
func (c *LogCache) StoreLog(l *raft.Log) error { return c.StoreLogs([]*raft.Log{l}) }

// StoreLogs stores entries, then caches them, evicting the oldest entries
// beyond the budget.
func (c *LogCache) StoreLogs(logs []*raft.Log) error {
	if err := c.store.StoreLogs(logs); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range logs {
		n := logBytes(l)
		old, had := c.logs[l.Index]
		if had {
			c.bytes -= logBytes(old)
			delete(c.logs, l.Index) // its index stays in order; eviction skips it
		}
		if n > c.max {
			continue // too big to cache; the store has it
		}
		if !had {
			c.order = append(c.order, l.Index)
		}
		c.logs[l.Index] = l
		c.bytes += n
	}
	c.evict()
	return nil
}

// evict drops the oldest entries until the cache holds at most its limit.
// Called with c.mu held.
func (c *LogCache) evict() {
	for c.bytes > c.max && len(c.order) > 0 {
		idx := c.order[0]
		c.order = c.order[1:]
		if old, ok := c.logs[idx]; ok {
			c.bytes -= logBytes(old)
			delete(c.logs, idx)
		}
	}
	if len(c.order) == 0 {
		c.order = nil // let the backing array go
	}
}

// DeleteRange deletes entries min..max from the store and empties the
// cache.
func (c *LogCache) DeleteRange(min, max uint64) error {
	c.mu.Lock()
	c.logs = make(map[uint64]*raft.Log)
	c.order, c.bytes = nil, 0
	c.mu.Unlock()
	return c.store.DeleteRange(min, max)
}

// FirstIndex is the store's.
func (c *LogCache) FirstIndex() (uint64, error) { return c.store.FirstIndex() }

// LastIndex is the store's.
func (c *LogCache) LastIndex() (uint64, error) { return c.store.LastIndex() }

// Bytes reports what the cache holds, by its own measure.
func (c *LogCache) Bytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}
