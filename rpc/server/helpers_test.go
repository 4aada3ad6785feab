package server_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify/poll"
	"github.com/metamq/meta/verify/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyTestMain(m) }

func ctxT(t *testing.T, d time.Duration) context.Context { t.Helper(); return testkit.Context(t, d) }

func ctx10(t *testing.T) context.Context { t.Helper(); return ctxT(t, 10*time.Second) }

// must(call(...))(t) fails the test if the call failed, else returns its
// result.
// allPages follows a listing from its first page to its last: list asks
// for the page that starts after start, keys picks the keys of its items
// (and may check them). It returns every key in order and the number of
// pages.
func allPages[Resp interface {
	GetMore() bool
	GetNextStartAfter() string
}](t *testing.T, list func(start string) (Resp, error), keys func(Resp) []string) (all []string, pages int) {
	t.Helper()
	start := ""
	for {
		resp := must(list(start))(t)
		pages++
		all = append(all, keys(resp)...)
		if !resp.GetMore() {
			return all, pages
		}
		start = resp.GetNextStartAfter()
	}
}

// keysOf is the key of each item.
func keysOf[T any](items []T, key func(T) string) []string {
	var out []string
	for _, it := range items {
		out = append(out, key(it))
	}
	return out
}

func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return v
	}
}

// fillerPut writes key=value for a test that needs the write done but
// does not test its outcome (history to compact, revisions to move): an
// unknown outcome (a leader lost in a stall of a loaded machine) is not a
// failure there, so the same put is sent again, at most 5 times. Any
// other error fails the test.
func fillerPut(t *testing.T, cl *client.Client, key, value string) *metapb.PutResponse {
	t.Helper()
	var err error
	for range 5 {
		var resp *metapb.PutResponse
		resp, err = cl.Put(ctx10(t), &metapb.PutRequest{Key: []byte(key), Value: []byte(value)})
		if err == nil {
			return resp
		}
		if !client.IsUnknown(err) {
			break
		}
		t.Logf("put %s: %v; sending it again", key, err)
	}
	t.Fatalf("put %s: %v", key, err)
	return nil
}

// wantStatus checks err's code, and that the ErrorInfo reason and (for
// InvalidArgument) the named field are the expected ones.
func wantStatus(t *testing.T, err error, code codes.Code, reason, field string) *errdetails.ErrorInfo {
	t.Helper()
	st, _ := status.FromError(err)
	if err == nil || st.Code() != code {
		t.Fatalf("got %v, want code %s", err, code)
	}
	var info *errdetails.ErrorInfo
	var violation string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.BadRequest:
			if len(d.FieldViolations) > 0 {
				violation = d.FieldViolations[0].Field
			}
		}
	}
	if reason != "" && (info == nil || info.Reason != reason) {
		t.Fatalf("got error info %v, want reason %s (error %v)", info, reason, err)
	}
	if code == codes.InvalidArgument && (violation != field || !strings.Contains(st.Message(), field)) {
		t.Fatalf("got field %q, message %q; want field %q named", violation, st.Message(), field)
	}
	if code != codes.InvalidArgument && field != "" && (info == nil || info.Metadata[metapb.MetaField] != field) {
		t.Fatalf("got error info %v, want field %q", info, field)
	}
	return info
}

// idsIn returns n ids "<prefix>NN" that route to data group g of m.
func idsIn(prefix string, g string, m, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		id := fmt.Sprintf("%s%03d", prefix, i)
		if metapb.DataGroupFor([]byte(id), m) == g {
			out = append(out, id)
		}
	}
	return out
}

// watchCollector runs client.Watch in a goroutine the test owns and
// gathers what it delivers.
type watchCollector struct {
	mu        sync.Mutex
	events    []*metapb.WatchEvent
	progress  int
	revisions map[string]uint64
	first     map[string]uint64 // revisions of the first response
	err       error
	done      chan struct{}
	cancel    context.CancelFunc
}

func startWatch(t *testing.T, cl *client.Client, req *metapb.WatchRequest) *watchCollector {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watchCollector{revisions: map[string]uint64{}, done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(w.done)
		err := cl.Watch(ctx, req, func(resp *metapb.WatchResponse) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.first == nil {
				w.first = map[string]uint64{}
				for g, r := range resp.Revisions {
					w.first[g] = r
				}
			}
			w.events = append(w.events, resp.Events...)
			if resp.Progress {
				w.progress++
			}
			for g, r := range resp.Revisions {
				w.revisions[g] = max(w.revisions[g], r)
			}
			return nil
		})
		w.mu.Lock()
		w.err = err
		w.mu.Unlock()
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *watchCollector) stop() {
	w.cancel()
	<-w.done
}

func (w *watchCollector) snapshot() ([]*metapb.WatchEvent, map[string]uint64, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	revs := map[string]uint64{}
	for g, r := range w.revisions {
		revs[g] = r
	}
	return append([]*metapb.WatchEvent(nil), w.events...), revs, w.progress
}

// started waits for the first response (the watch's start point).
func (w *watchCollector) started(t *testing.T) map[string]uint64 {
	t.Helper()
	var first map[string]uint64
	poll.ForTrue(t, "the watch's first response", 20*time.Second, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		first = w.first
		return first != nil || w.err != nil
	})
	if w.err != nil {
		t.Fatalf("watch ended: %v", w.err)
	}
	return first
}

// waitEvents waits until at least n events arrived and returns them.
func (w *watchCollector) waitEvents(t *testing.T, n int) []*metapb.WatchEvent {
	t.Helper()
	var evs []*metapb.WatchEvent
	poll.ForTrue(t, fmt.Sprintf("%d watch events", n), 20*time.Second, func() bool {
		evs, _, _ = w.snapshot()
		return len(evs) >= n
	})
	return evs
}

// waitRevisions waits until every group's delivered revision reaches
// want's.
func (w *watchCollector) waitRevisions(t *testing.T, want map[string]uint64) {
	t.Helper()
	poll.ForTrue(t, fmt.Sprintf("watch revisions %v", want), 30*time.Second, func() bool {
		_, revs, _ := w.snapshot()
		for g, r := range want {
			if revs[g] < r {
				return false
			}
		}
		return true
	})
}
