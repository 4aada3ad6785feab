package rocks

import (
	"fmt"
	"testing"
)

func TestStats(t *testing.T) {
	db := openTest(t, "g", "h")
	s := mustData(t, db, "g")
	for i := range 2000 {
		mustPut(t, s, fmt.Sprintf("key-%05d", i), "value")
	}
	before := db.Stats()
	if before.MemTableBytes == 0 || before.BytesWritten == 0 {
		t.Errorf("after 2000 writes: got %+v, want memtable and written bytes", before)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		if _, _, err := s.Get(fmt.Appendf(nil, "key-%05d", i)); err != nil {
			t.Fatal(err)
		}
	}
	after := db.Stats()
	if after.LiveSSTBytes == 0 || after.TotalSSTBytes < after.LiveSSTBytes {
		t.Errorf("after a flush: live SST %d, total %d; want live > 0 and total >= live", after.LiveSSTBytes, after.TotalSSTBytes)
	}
	if after.BlockCacheHits+after.BlockCacheMisses == 0 || after.BlockCacheCapacity != 8<<20 {
		t.Errorf("after reading flushed keys: got %+v, want block cache hits or misses and capacity %d", after, 8<<20)
	}
	if after.WriteStopped || after.BackgroundErrors != 0 || db.BackgroundErrors() != 0 {
		t.Errorf("healthy database: got stopped %v, background errors %d", after.WriteStopped, after.BackgroundErrors)
	}
	_ = db.Close()
	if got := db.Stats(); got != (Stats{}) {
		t.Errorf("after Close: got %+v, want zero", got)
	}
}

func TestTickers(t *testing.T) {
	in := "rocksdb.block.cache.miss COUNT : 12\nrocksdb.block.cache.hit COUNT : 345\n" +
		"rocksdb.db.get.micros P50 : 1.0 P95 : 2.0 COUNT : 7 SUM : 9\nrocksdb.stall.micros COUNT : 0\n"
	got := tickers(in)
	want := map[string]uint64{"rocksdb.block.cache.miss": 12, "rocksdb.block.cache.hit": 345, "rocksdb.stall.micros": 0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %d, want %d", k, got[k], v)
		}
	}
	if _, ok := got["rocksdb.db.get.micros P50 : 1.0 P95 : 2.0"]; ok || len(got) != len(want) {
		t.Errorf("histogram line parsed as a counter: %v", got)
	}
}
