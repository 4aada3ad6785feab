package rocks

import (
	"bytes"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"pgregory.net/rapid"
)

func testLog(index uint64) *raft.Log {
	return &raft.Log{
		Index: index, Term: 1, Type: raft.LogCommand,
		Data:       []byte(fmt.Sprintf("entry %d", index)),
		AppendedAt: time.Unix(1700000000, int64(index)),
	}
}

func testLogs(from, to uint64) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, testLog(i))
	}
	return out
}

func mustLogStore(t testing.TB, db *DB, g string) *LogStore {
	t.Helper()
	return mustOpen(t, db.LogStore, g)
}

func expectBounds(t testing.TB, ls *LogStore, first, last uint64) {
	t.Helper()
	f, err1 := ls.FirstIndex()
	l, err2 := ls.LastIndex()
	if err1 != nil || err2 != nil {
		t.Fatalf("FirstIndex/LastIndex: %v, %v", err1, err2)
	}
	if f != first || l != last {
		t.Fatalf("bounds: got [%d, %d], want [%d, %d]", f, l, first, last)
	}
}

func TestLogStoreBasics(t *testing.T) {
	db := openTest(t, "g")
	ls := mustLogStore(t, db, "g")
	expectBounds(t, ls, 0, 0)

	var l raft.Log
	if err := ls.GetLog(1, &l); err != raft.ErrLogNotFound { // raft compares with ==
		t.Fatalf("GetLog on an empty log: got %v, want exactly raft.ErrLogNotFound", err)
	}
	if err := ls.StoreLogs(nil); err != nil {
		t.Fatalf("StoreLogs(nil): %v", err)
	}
	if err := ls.StoreLog(&raft.Log{Index: 0}); err == nil {
		t.Fatal("StoreLog of index 0: got nil, want an error")
	}
	if err := ls.StoreLogs(testLogs(1, 10)); err != nil {
		t.Fatal(err)
	}
	expectBounds(t, ls, 1, 10)
	if err := ls.GetLog(4, &l); err != nil {
		t.Fatal(err)
	}
	if f := sameLog(&l, testLog(4)); f != "" {
		t.Fatalf("GetLog(4) differs in %s: got %+v", f, l)
	}
	if err := ls.GetLog(11, &l); err != raft.ErrLogNotFound {
		t.Fatalf("GetLog past the end: got %v, want exactly raft.ErrLogNotFound", err)
	}
	// The entry is Go memory: it outlives the database and does not share
	// storage with it.
	l.Data[0] = 'X'
	var again raft.Log
	if err := ls.GetLog(4, &again); err != nil {
		t.Fatal(err)
	}
	if string(again.Data) != "entry 4" {
		t.Fatalf("stored Data after changing a returned copy: got %q, want %q", again.Data, "entry 4")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if string(again.Data) != "entry 4" {
		t.Fatalf("Data after Close: got %q, want %q", again.Data, "entry 4")
	}
}

// TestLogStoreBoundsWithGaps covers logs with holes, which raft creates when
// it stores entries after an installed snapshot without deleting older ones:
// the bounds are the smallest and greatest index actually stored.
func TestLogStoreBoundsWithGaps(t *testing.T) {
	dir := t.TempDir()
	db := openAt(t, dir, "g")
	ls := mustLogStore(t, db, "g")
	step := func(what string, err error, first, last uint64) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		expectBounds(t, ls, first, last)
	}
	step("store 1..5", ls.StoreLogs(testLogs(1, 5)), 1, 5)
	step("store 10..12", ls.StoreLogs(testLogs(10, 12)), 1, 12)
	step("delete 1..7 (prefix across the gap)", ls.DeleteRange(1, 7), 10, 12)
	step("store 20", ls.StoreLog(testLog(20)), 10, 20)
	step("delete 15..25 (suffix across the gap)", ls.DeleteRange(15, 25), 10, 12)
	step("delete 11..11 (hole)", ls.DeleteRange(11, 11), 10, 12)
	step("delete 30..40 (nothing stored)", ls.DeleteRange(30, 40), 10, 12)
	step("delete 5..4 (empty range)", ls.DeleteRange(5, 4), 10, 12)

	var l raft.Log
	for _, i := range []uint64{5, 11, 20} {
		if err := ls.GetLog(i, &l); err != raft.ErrLogNotFound {
			t.Fatalf("GetLog(%d) of a deleted entry: got %v, want raft.ErrLogNotFound", i, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openAt(t, dir, "g")
	ls = mustLogStore(t, db, "g")
	step("reopen", nil, 10, 12)

	step("store the last indexes", ls.StoreLogs([]*raft.Log{testLog(math.MaxUint64 - 1), testLog(math.MaxUint64)}), 10, math.MaxUint64)
	step("delete MaxUint64..MaxUint64", ls.DeleteRange(math.MaxUint64, math.MaxUint64), 10, math.MaxUint64-1)
	step("delete everything", ls.DeleteRange(0, math.MaxUint64), 0, 0)
	step("store 7 into an emptied log", ls.StoreLog(testLog(7)), 7, 7)
}

// TestLogStoreConcurrentAppendAndCompact runs raft's two writers at once: the
// main loop appending and the snapshot goroutine compacting the prefix. The
// cached bounds must match what is on disk afterwards.
func TestLogStoreConcurrentAppendAndCompact(t *testing.T) {
	dir := t.TempDir()
	db := openAt(t, dir, "g")
	ls := mustLogStore(t, db, "g")
	const batches, per = 100, 8
	var wg sync.WaitGroup
	wg.Add(2)
	errs := make(chan error, 2)
	go func() {
		defer wg.Done()
		for i := range uint64(batches) {
			if err := ls.StoreLogs(testLogs(i*per+1, (i+1)*per)); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for range batches {
			first, _ := ls.FirstIndex()
			last, _ := ls.LastIndex()
			if last > first+20 {
				if err := ls.DeleteRange(first, last-20); err != nil {
					errs <- err
					return
				}
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	first, _ := ls.FirstIndex()
	last, _ := ls.LastIndex()
	if last != batches*per {
		t.Fatalf("LastIndex: got %d, want %d", last, batches*per)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openAt(t, dir, "g")
	expectBounds(t, mustLogStore(t, db, "g"), first, last)
}

// logModel is the rapid state machine: the LogStore against raft's own
// InmemStore, over raft-shaped operations (contiguous appends, prefix
// compaction, suffix truncation), with reopens in between.
type logModel struct {
	dir   string
	db    *DB
	ls    *LogStore
	model *raft.InmemStore
}

var genLogBody = rapid.Custom(func(t *rapid.T) raft.Log {
	l := raft.Log{
		Term: rapid.Uint64Range(1, math.MaxUint64).Draw(t, "term"),
		Type: raft.LogType(rapid.IntRange(0, 6).Draw(t, "type")),
		// Random bytes are slow to draw one by one (especially under -race);
		// a short random head and a long filler tail cover both the content
		// and the sizes that matter to the encoding.
		Data: append(rapid.SliceOfN(rapid.Byte(), 0, 16).Draw(t, "data"),
			bytes.Repeat([]byte{0xa5}, rapid.IntRange(0, 300).Draw(t, "pad"))...),
	}
	if rapid.Bool().Draw(t, "hasExt") {
		l.Extensions = rapid.SliceOfN(rapid.Byte(), 1, 16).Draw(t, "ext")
	}
	if rapid.Bool().Draw(t, "hasTime") {
		l.AppendedAt = time.Unix(rapid.Int64Range(-1e10, 1e10).Draw(t, "sec"), rapid.Int64Range(0, 1e9-1).Draw(t, "nsec"))
	}
	return l
})

func (m *logModel) open(t *rapid.T) {
	db, err := Open(testOptions(m.dir), []string{"g"})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	m.db = db
	m.ls, _ = db.LogStore("g")
}

func (m *logModel) bounds() (uint64, uint64) {
	f, _ := m.model.FirstIndex()
	l, _ := m.model.LastIndex()
	return f, l
}

func (m *logModel) append(t *rapid.T) {
	_, last := m.bounds()
	start := last + 1
	if last == 0 {
		start = rapid.Uint64Range(1, 1000).Draw(t, "start")
	}
	n := rapid.IntRange(1, 8).Draw(t, "n")
	logs := make([]*raft.Log, n)
	for i := range logs {
		l := genLogBody.Draw(t, "log")
		l.Index = start + uint64(i)
		logs[i] = &l
	}
	var err error
	if n == 1 && rapid.Bool().Draw(t, "single") {
		err = m.ls.StoreLog(logs[0])
	} else {
		err = m.ls.StoreLogs(logs)
	}
	if err != nil {
		t.Fatalf("StoreLogs: %v", err)
	}
	_ = m.model.StoreLogs(logs)
}

func (m *logModel) compact(t *rapid.T) {
	first, last := m.bounds()
	if last == 0 {
		t.Skip("empty log")
	}
	lo := rapid.Uint64Range(1, first).Draw(t, "lo")
	hi := rapid.Uint64Range(first, last+2).Draw(t, "hi")
	m.deleteRange(t, lo, hi)
}

func (m *logModel) truncate(t *rapid.T) {
	first, last := m.bounds()
	if last == 0 {
		t.Skip("empty log")
	}
	lo := rapid.Uint64Range(first, last).Draw(t, "lo")
	hi := last + rapid.Uint64Range(0, 2).Draw(t, "beyond")
	m.deleteRange(t, lo, hi)
}

func (m *logModel) deleteRange(t *rapid.T, lo, hi uint64) {
	if err := m.ls.DeleteRange(lo, hi); err != nil {
		t.Fatalf("DeleteRange(%d, %d): %v", lo, hi, err)
	}
	_ = m.model.DeleteRange(lo, hi)
}

func (m *logModel) get(t *rapid.T) {
	_, last := m.bounds()
	i := rapid.Uint64Range(0, last+3).Draw(t, "index")
	var got, want raft.Log
	gotErr := m.ls.GetLog(i, &got)
	wantErr := m.model.GetLog(i, &want)
	if gotErr != wantErr {
		t.Fatalf("GetLog(%d): got error %v, want %v", i, gotErr, wantErr)
	}
	if wantErr == nil {
		if f := sameLog(&got, &want); f != "" {
			t.Fatalf("GetLog(%d) differs in %s: got %+v, want %+v", i, f, got, want)
		}
	}
}

func (m *logModel) reopen(t *rapid.T) {
	// Opening costs tens of milliseconds (manifest and OPTIONS fsyncs);
	// reopen a quarter as often as other actions run to keep the test quick.
	if rapid.IntRange(0, 3).Draw(t, "reopenDice") != 0 {
		t.Skip("not this time")
	}
	if err := m.db.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	m.open(t)
}

func (m *logModel) check(t *rapid.T) {
	wantFirst, wantLast := m.bounds()
	first, err1 := m.ls.FirstIndex()
	last, err2 := m.ls.LastIndex()
	if err1 != nil || err2 != nil {
		t.Fatalf("bounds: %v, %v", err1, err2)
	}
	if first != wantFirst || last != wantLast {
		t.Fatalf("bounds: got [%d, %d], want [%d, %d]", first, last, wantFirst, wantLast)
	}
}

func TestLogStoreModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		m := &logModel{dir: t.TempDir(), model: raft.NewInmemStore()}
		m.open(rt)
		defer func() { _ = m.db.Close() }()
		rt.Repeat(map[string]func(*rapid.T){
			"append":   m.append,
			"compact":  m.compact,
			"truncate": m.truncate,
			"get":      m.get,
			"reopen":   m.reopen,
			"":         m.check,
		})
	})
}

func TestLogValuesAreCopied(t *testing.T) {
	db := openTest(t, "g")
	ls := mustLogStore(t, db, "g")
	big := &raft.Log{Index: 1, Data: bytes.Repeat([]byte("x"), 1<<16), Extensions: []byte("e")}
	if err := ls.StoreLog(big); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := ls.GetLog(1, &l); err != nil {
		t.Fatal(err)
	}
	// Overwrite and flush so that any C buffer the read used is reused.
	if err := ls.StoreLog(&raft.Log{Index: 1, Data: bytes.Repeat([]byte("y"), 1<<16)}); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(l.Data, big.Data) || string(l.Extensions) != "e" {
		t.Fatal("a log read earlier changed after later writes: it aliases RocksDB memory")
	}
}
