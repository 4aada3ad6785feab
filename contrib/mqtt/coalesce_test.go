package mqtt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/metamq/meta/rpc/metapb"
)

// recorder stands in for PutSessions to see how the writer batches.
type recorder struct {
	mu      sync.Mutex
	batches [][]string
}

func (r *recorder) put(_ context.Context, req *metapb.PutSessionsRequest) (*metapb.PutSessionsResponse, error) {
	ids := make([]string, len(req.Sessions))
	for i, s := range req.Sessions {
		ids[i] = s.ClientId
	}
	r.mu.Lock()
	r.batches = append(r.batches, ids)
	r.mu.Unlock()
	resp := &metapb.PutSessionsResponse{Applied: make([]bool, len(ids))}
	for i := range ids {
		resp.Applied[i] = true
	}
	return resp, nil
}

// 500 clients writing at once make 5 calls of 100 (the size bound; the
// delay bound is far away), and no call carries a client twice.
func TestWriterBatchesBySize(t *testing.T) {
	var r recorder
	w := newWriter(r.put, 100, time.Hour, 4)
	defer w.close()
	var wg sync.WaitGroup
	errs := make(chan error, 500)
	for i := range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := w.write(context.Background(), &metapb.Session{ClientId: fmt.Sprintf("c%d", i%490)}, false)
			if res.err != nil || !res.applied {
				errs <- fmt.Errorf("write %d: applied %v, err %v", i, res.applied, res.err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	total := 0
	for i, b := range r.batches {
		total += len(b)
		seen := map[string]bool{}
		for _, id := range b {
			if seen[id] {
				t.Errorf("batch %d carries %s twice", i, id)
			}
			seen[id] = true
		}
		if len(b) > 100 {
			t.Errorf("batch %d: %d writes, want at most 100", i, len(b))
		}
	}
	if total != 500 || len(r.batches) > 6 {
		t.Fatalf("got %d writes in %d calls, want 500 in 5 (6 if repeats of a client split one)", total, len(r.batches))
	}
	if w.calls.Load() != uint64(len(r.batches)) || w.sessions.Load() != 500 {
		t.Fatalf("counters: got %d calls, %d sessions; want %d, 500", w.calls.Load(), w.sessions.Load(), len(r.batches))
	}
}

// A lone write leaves after the delay bound, in a call of its own.
func TestWriterBatchesByDelay(t *testing.T) {
	var r recorder
	w := newWriter(r.put, 1000, time.Millisecond, 1)
	defer w.close()
	if res := w.write(context.Background(), &metapb.Session{ClientId: "alone"}, false); res.err != nil {
		t.Fatal(res.err)
	}
	if len(r.batches) != 1 || len(r.batches[0]) != 1 {
		t.Fatalf("got batches %v, want one of one", r.batches)
	}
}

// The call's error reaches every write of the batch; after close, writes
// fail at once.
func TestWriterErrorsAndClose(t *testing.T) {
	boom := errors.New("boom")
	w := newWriter(func(context.Context, *metapb.PutSessionsRequest) (*metapb.PutSessionsResponse, error) {
		return nil, boom
	}, 10, time.Millisecond, 1)
	if res := w.write(context.Background(), &metapb.Session{ClientId: "x"}, true); !errors.Is(res.err, boom) {
		t.Fatalf("got %v, want boom", res.err)
	}
	w.close()
	w.close()
	if res := w.write(context.Background(), &metapb.Session{ClientId: "x"}, false); !errors.Is(res.err, errWriterClosed) {
		t.Fatalf("after close: got %v, want errWriterClosed", res.err)
	}
}
