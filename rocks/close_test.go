package rocks

import (
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestCloseDuringUse closes the DB while goroutines read, scan, write, take
// snapshots and append to the log. Every call must succeed or return
// ErrClosed; none may crash on freed C memory (the test would abort).
func TestCloseDuringUse(t *testing.T) {
	db := openTest(t, "g")
	s := mustData(t, db, "g")
	ls := mustLogStore(t, db, "g")
	for i := range 100 {
		mustPut(t, s, string(rune('a'+i%26))+string(rune('0'+i/26)), "v")
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	check := func(err error) bool {
		if err != nil && !errors.Is(err, ErrClosed) {
			errs <- err
		}
		return err == nil
	}
	workers := map[string]func(i int) bool{
		"get": func(i int) bool { _, _, err := s.Get([]byte("a0")); return check(err) },
		"scan": func(i int) bool {
			return check(s.Scan(nil, nil, func(k, v []byte) bool { return true }))
		},
		"batch": func(i int) bool {
			b := db.NewBatch()
			defer b.Close()
			b.Put(s, []byte("k"), []byte("v"))
			_, _, err := b.Get(s, []byte("a0"))
			if !check(err) {
				return false
			}
			return check(b.Commit(false))
		},
		"snapshot": func(i int) bool {
			sn := db.NewSnapshot()
			defer sn.Close()
			return check(sn.Scan(s, nil, nil, func(k, v []byte) bool { return true }))
		},
		"log": func(i int) bool {
			return check(ls.StoreLog(&raft.Log{Index: uint64(i + 1)}))
		},
	}
	for _, work := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; ; i++ {
				if !work(i) {
					return
				}
			}
		}()
	}
	close(start)
	// Close only once the log worker has stored its first entry, so that
	// the others are running too.
	var l raft.Log
	deadline := time.Now().Add(10 * time.Second)
	for ls.GetLog(1, &l) != nil {
		if time.Now().After(deadline) {
			t.Fatal("log worker stored nothing in 10s")
		}
		runtime.Gosched()
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("call during Close: got %v, want nil or ErrClosed", err)
	}
}
