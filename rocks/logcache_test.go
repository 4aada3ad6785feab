package rocks

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
	"pgregory.net/rapid"
)

// TestLogCacheAgainstStore: through any sequence of stores, deletes and
// reads, a LogCache in front of a store answers exactly as the store alone
// does, and never holds more than its budget.
func TestLogCacheAgainstStore(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		budget := rapid.IntRange(0, 4000).Draw(t, "budget")
		model := raft.NewInmemStore()
		c := NewLogCache(raft.NewInmemStore(), budget)
		var last uint64
		for step := range rapid.IntRange(1, 60).Draw(t, "steps") {
			switch rapid.IntRange(0, 3).Draw(t, "op") {
			case 0, 1: // append, sometimes overwriting a suffix
				from := last + 1
				if last > 0 && rapid.Bool().Draw(t, "overwrite") {
					from = rapid.Uint64Range(1, last).Draw(t, "from")
				}
				var logs []*raft.Log
				for i := range rapid.IntRange(1, 5).Draw(t, "n") {
					size := rapid.IntRange(0, 900).Draw(t, "size")
					logs = append(logs, &raft.Log{Index: from + uint64(i), Term: uint64(step + 1), Data: bytes.Repeat([]byte{byte(step)}, size)})
				}
				if err := model.StoreLogs(logs); err != nil {
					t.Fatal(err)
				}
				if err := c.StoreLogs(logs); err != nil {
					t.Fatal(err)
				}
				last = max(last, logs[len(logs)-1].Index)
			case 2: // compact a prefix
				if last == 0 {
					continue
				}
				hi := rapid.Uint64Range(1, last).Draw(t, "hi")
				if err := model.DeleteRange(1, hi); err != nil {
					t.Fatal(err)
				}
				if err := c.DeleteRange(1, hi); err != nil {
					t.Fatal(err)
				}
			case 3: // read everything
				for i := uint64(1); i <= last+1; i++ {
					var want, got raft.Log
					werr, gerr := model.GetLog(i, &want), c.GetLog(i, &got)
					if werr != gerr || want.Term != got.Term || !bytes.Equal(want.Data, got.Data) {
						t.Fatalf("GetLog(%d): got term %d, %d bytes, %v; want term %d, %d bytes, %v",
							i, got.Term, len(got.Data), gerr, want.Term, len(want.Data), werr)
					}
				}
			}
			if c.Bytes() > budget {
				t.Fatalf("cache holds %d bytes, budget %d", c.Bytes(), budget)
			}
		}
	})
}

// TestLogCacheServesRecentEntries: recent entries come from memory (the
// store is not asked), old ones from the store.
func TestLogCacheServesRecentEntries(t *testing.T) {
	store := &countingStore{LogStore: raft.NewInmemStore()}
	c := NewLogCache(store, 10*(100+64))
	for i := uint64(1); i <= 20; i++ {
		if err := c.StoreLog(&raft.Log{Index: i, Data: make([]byte, 100)}); err != nil {
			t.Fatal(err)
		}
	}
	var l raft.Log
	for i := uint64(11); i <= 20; i++ {
		if err := c.GetLog(i, &l); err != nil || l.Index != i {
			t.Fatalf("GetLog(%d): got %d, %v", i, l.Index, err)
		}
	}
	if store.gets != 0 {
		t.Fatalf("the last 10 entries: store asked %d times, want 0", store.gets)
	}
	if err := c.GetLog(1, &l); err != nil || l.Index != 1 || store.gets != 1 {
		t.Fatalf("GetLog(1): got %d, %v after %d store reads; want it from the store", l.Index, err, store.gets)
	}
}

type countingStore struct {
	raft.LogStore
	gets int
}

func (s *countingStore) GetLog(i uint64, l *raft.Log) error {
	s.gets++
	return s.LogStore.GetLog(i, l)
}

// The caches of one budget hold an equal share of it at most (and at most
// the per-cache limit), whatever the number of caches: a cache that comes
// shrinks the others' share at once, one that closes gives its share back.
// What is evicted is still read from the store.
func TestLogCacheBudgetSharesTheNodeBudget(t *testing.T) {
	const entry = 100 + 64 // logBytes of a 100-byte entry
	b := NewLogCacheBudget(40*entry, 30*entry)
	fill := func(c *LogCache, n int) {
		t.Helper()
		last, _ := c.LastIndex()
		for i := range uint64(n) {
			if err := c.StoreLog(&raft.Log{Index: last + 1 + i, Data: make([]byte, 100)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	c1 := b.NewCache(raft.NewInmemStore())
	fill(c1, 50)
	if got := c1.Bytes(); got != 30*entry {
		t.Fatalf("one cache: holds %d bytes, want the per-cache limit %d", got, 30*entry)
	}
	c2 := b.NewCache(raft.NewInmemStore())
	if got := c1.Bytes(); got != 20*entry {
		t.Fatalf("a second cache came: the first holds %d bytes, want half the budget %d", got, 20*entry)
	}
	fill(c2, 50)
	c3 := b.NewCache(raft.NewInmemStore())
	fill(c3, 50)
	total := c1.Bytes() + c2.Bytes() + c3.Bytes()
	if total > 40*entry || b.Share() != 40*entry/3 {
		t.Fatalf("three full caches: %d bytes in all, share %d; want at most the budget %d, share %d", total, b.Share(), 40*entry, 40*entry/3)
	}
	var l raft.Log
	if err := c1.GetLog(1, &l); err != nil || l.Index != 1 {
		t.Fatalf("an evicted entry: got %d, %v, want it from the store", l.Index, err)
	}
	c2.Close()
	c3.Close()
	if c2.Bytes() != 0 || b.Share() != 30*entry {
		t.Fatalf("two caches closed: the closed one holds %d bytes, the share is %d; want 0 and %d", c2.Bytes(), b.Share(), 30*entry)
	}
	fill(c1, 50)
	if got := c1.Bytes(); got != 30*entry {
		t.Fatalf("alone again: holds %d bytes, want %d", got, 30*entry)
	}
}
