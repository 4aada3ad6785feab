package server_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/controller"
	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify/poll"
	"github.com/metamq/meta/verify/testkit"
)

// change is what a watch event says, in comparable form.
type change struct {
	group string
	rev   uint64
	typ   metapb.WatchEvent_Type
	key   string
	value string
}

func (c change) String() string {
	return fmt.Sprintf("%s@%d %s %s=%s", c.group, c.rev, c.typ, c.key, c.value)
}

func kvChanges(evs []*metapb.WatchEvent) []change {
	var out []change
	for _, ev := range evs {
		out = append(out, change{ev.Group, ev.Revision, ev.Type, string(ev.Kv.GetKey()), string(ev.Kv.GetValue())})
	}
	return out
}

// inGroupOrder checks that each group's events come in strictly increasing
// revision order (no duplicate, no reordering) and returns the changes
// sorted by group and revision.
func inGroupOrder(t *testing.T, chs []change) []change {
	t.Helper()
	last := map[string]uint64{}
	lastKey := map[string]string{}
	for _, c := range chs {
		// Several events may share a revision (one op, several keys),
		// never repeat one.
		id := fmt.Sprintf("%d/%s", c.rev, c.key)
		if c.rev < last[c.group] || (c.rev == last[c.group] && id == lastKey[c.group]) {
			t.Fatalf("%s: event %v after revision %d: out of order or repeated", c.group, c, last[c.group])
		}
		last[c.group], lastKey[c.group] = c.rev, id
	}
	out := slices.Clone(chs)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].group != out[j].group {
			return out[i].group < out[j].group
		}
		return out[i].rev < out[j].rev
	})
	return out
}

func TestWatch(t *testing.T) {
	clk := testkit.NewFakeClock(time.Unix(1_700_000_000, 0))
	c := metanodetest.Start(t, metanodetest.Options{DataGroups: 2, Configure: func(cfg *metanode.Config) {
		cfg.Clock = clk
		cfg.TimerInterval = 20 * time.Millisecond
		cfg.EventRetention = time.Minute
		cfg.EventRetentionMin = 5
		// An orderly stop must not wait for open watches (see the last
		// subtest): with this timeout it would hang instead.
		cfg.ShutdownTimeout = time.Hour
	}, Controller: func(cfg *controller.Config) {
		cfg.CheckInterval = 20 * time.Millisecond
		cfg.RebalanceInterval = 100 * time.Millisecond
		cfg.SpreadInterval = 0
	}})
	cl := c.Client("")
	var kvStart map[string]uint64
	var kvSeen []change
	t.Run("kv", func(t *testing.T) {
		w := startWatch(t, cl, &metapb.WatchRequest{Space: metapb.WatchSpace_WATCH_SPACE_KV, Prefix: []byte("w/"), PrevKv: true})
		kvStart = w.started(t)
		if len(kvStart) != 2 {
			t.Fatalf("first response: got revisions %v, want both data groups", kvStart)
		}
		var want []change
		put := func(k, v string) {
			resp := must(cl.Put(ctx10(t), &metapb.PutRequest{Key: []byte(k), Value: []byte(v)}))(t)
			if strings.HasPrefix(k, "w/") {
				want = append(want, change{resp.Header.Group, resp.Header.Revision, metapb.WatchEvent_PUT, k, v})
			}
		}
		put("w/a", "1")
		put("w/b", "1")
		put("x/c", "1")
		put("w/a", "2")
		del := must(cl.Delete(ctx10(t), &metapb.DeleteRequest{Key: []byte("w/b")}))(t)
		want = append(want, change{del.Header.Group, del.Header.Revision, metapb.WatchEvent_DELETE, "w/b", ""})
		evs := w.waitEvents(t, len(want))
		got := inGroupOrder(t, kvChanges(evs))
		want = inGroupOrder(t, want)
		if !slices.Equal(got, want) {
			t.Fatalf("events: got %v, want %v", got, want)
		}
		for _, ev := range evs {
			switch {
			case string(ev.Kv.Key) == "w/a" && string(ev.Kv.Value) == "2" && string(ev.PrevKv.GetValue()) != "1":
				t.Fatalf("second put of w/a: got prev %v, want value 1", ev.PrevKv)
			case ev.Type == metapb.WatchEvent_DELETE && string(ev.PrevKv.GetValue()) != "1":
				t.Fatalf("delete of w/b: got prev %v, want value 1", ev.PrevKv)
			}
		}
		kvSeen = got
	})
	t.Run("replay from a revision", func(t *testing.T) {
		start := map[string]uint64{}
		for g, r := range kvStart {
			start[g] = r + 1
		}
		w := startWatch(t, cl, &metapb.WatchRequest{Space: metapb.WatchSpace_WATCH_SPACE_KV, Prefix: []byte("w/"), StartRevisions: start})
		got := inGroupOrder(t, kvChanges(w.waitEvents(t, len(kvSeen))))
		if !slices.Equal(got, kvSeen) {
			t.Fatalf("replay: got %v, want %v", got, kvSeen)
		}
	})
	t.Run("resources", func(t *testing.T) {
		w := startWatch(t, cl, &metapb.WatchRequest{Space: metapb.WatchSpace_WATCH_SPACE_RESOURCES, ResourceKind: metapb.ResourceKind_RESOURCE_KIND_TOPIC})
		if s := w.started(t); len(s) != 1 || s[metapb.MetadataGroup] == 0 {
			t.Fatalf("first response: got revisions %v, want metadata-0's", s)
		}
		v1 := must(cl.CreateResource(ctx10(t), &metapb.CreateResourceRequest{Resource: topic("t1", 1)}))(t).Resource
		must(cl.CreateResource(ctx10(t), &metapb.CreateResourceRequest{Resource: user("u1")}))(t)
		v2 := must(cl.UpdateResource(ctx10(t), &metapb.UpdateResourceRequest{Resource: topic("t1", 2), ExpectedRevision: v1.ModRevision}))(t).Resource
		del := must(cl.DeleteResource(ctx10(t), &metapb.DeleteResourceRequest{Kind: v1.Kind, Name: "t1"}))(t)
		evs := w.waitEvents(t, 3)
		want := []struct {
			typ metapb.WatchEvent_Type
			rev uint64
			res *metapb.Resource
		}{{metapb.WatchEvent_PUT, v1.ModRevision, v1}, {metapb.WatchEvent_PUT, v2.ModRevision, v2}, {metapb.WatchEvent_DELETE, del.Revision, v2}}
		if len(evs) != len(want) {
			t.Fatalf("got %d events, want %d: %v", len(evs), len(want), evs)
		}
		for i, ev := range evs {
			if ev.Type != want[i].typ || ev.Revision != want[i].rev || ev.Group != metapb.MetadataGroup || !proto.Equal(ev.Resource, want[i].res) {
				t.Fatalf("event %d: got %v, want %s at %d of %v", i, ev, want[i].typ, want[i].rev, want[i].res)
			}
		}
	})
	t.Run("wills", func(t *testing.T) {
		w := startWatch(t, cl, &metapb.WatchRequest{Space: metapb.WatchSpace_WATCH_SPACE_WILLS, Prefix: []byte("wc-")})
		w.started(t)
		put := must(cl.PutWill(ctx10(t), &metapb.PutWillRequest{Will: &metapb.Will{ClientId: "wc-1", Topic: "t", Payload: []byte("p")}}))(t)
		must(cl.PutWill(ctx10(t), &metapb.PutWillRequest{Will: &metapb.Will{ClientId: "other", Topic: "t", Payload: []byte("p")}}))(t)
		must(cl.DeleteWill(ctx10(t), &metapb.DeleteWillRequest{ClientId: "wc-1"}))(t)
		evs := w.waitEvents(t, 2)
		if len(evs) != 2 || evs[0].Type != metapb.WatchEvent_PUT || !proto.Equal(evs[0].Will, put.Will) ||
			evs[1].Type != metapb.WatchEvent_DELETE || evs[1].Will.GetClientId() != "wc-1" || evs[1].Revision <= evs[0].Revision {
			t.Fatalf("will events: got %v, want a PUT of %v then its DELETE", evs, put.Will)
		}
	})
	t.Run("brokers and assignments", func(t *testing.T) {
		bw := startWatch(t, cl, &metapb.WatchRequest{Space: metapb.WatchSpace_WATCH_SPACE_BROKERS, Prefix: []byte("bk-")})
		aw := startWatch(t, cl, &metapb.WatchRequest{Space: metapb.WatchSpace_WATCH_SPACE_ASSIGNMENTS, Prefix: []byte("bk-1")})
		bw.started(t)
		aw.started(t)
		reg := must(cl.RegisterBroker(ctx10(t), &metapb.RegisterBrokerRequest{BrokerId: "bk-1", Endpoints: []string{"h:1"}}))(t)
		must(cl.CreateResource(ctx10(t), &metapb.CreateResourceRequest{Resource: &metapb.Resource{Kind: metapb.ResourceKind_RESOURCE_KIND_CONNECTOR,
			Name: "cn-1", Spec: &metapb.Resource_Connector{Connector: &metapb.ConnectorSpec{Type: "s3"}}}}))(t)
		b := bw.waitEvents(t, 1)[0]
		if b.Type != metapb.WatchEvent_PUT || b.Broker.GetBrokerId() != "bk-1" || b.Broker.Epoch != reg.BrokerEpoch || b.Revision != reg.BrokerEpoch {
			t.Fatalf("broker event: got %v, want bk-1 registered at epoch %d", b, reg.BrokerEpoch)
		}
		as := aw.waitEvents(t, 1)[0]
		if as.Type != metapb.WatchEvent_PUT || as.Assignment.GetConnector() != "cn-1" || as.Assignment.BrokerId != "bk-1" {
			t.Fatalf("assignment event: got %v, want cn-1 assigned to bk-1", as)
		}
	})
	t.Run("progress while idle", func(t *testing.T) {
		w := startWatch(t, cl, &metapb.WatchRequest{Space: metapb.WatchSpace_WATCH_SPACE_KV, Prefix: []byte("idle/"), ProgressIntervalMs: 100})
		first := w.started(t)
		// Changes outside the prefix move the groups' revisions; progress
		// notifications report them.
		var last *metapb.PutResponse
		for i := 0; i < 5; i++ {
			last = fillerPut(t, cl, fmt.Sprintf("busy/%d", i), "v")
		}
		w.waitRevisions(t, map[string]uint64{last.Header.Group: last.Header.Revision})
		evs, revs, progress := w.snapshot()
		if len(evs) != 0 || progress < 2 {
			t.Fatalf("idle watch: got %d events and %d progress notifications, want none and at least 2", len(evs), progress)
		}
		for g, r := range first {
			if revs[g] < r {
				t.Fatalf("%s: progress went back from %d to %d", g, r, revs[g])
			}
		}
	})
	t.Run("revision split over responses", func(t *testing.T) {
		// Revoking a lease deletes all its keys in one revision per group:
		// more events than one scan reads.
		lease := must(cl.LeaseGrant(ctx10(t), &metapb.LeaseGrantRequest{TtlSeconds: 3600}))(t).Id
		const n = 700
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for p := 0; p < 10; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := p; i < n; i += 10 {
					// The same put again after an unknown outcome (a leader
					// change on a loaded machine): it writes the same value.
					err := client.ErrUnknownOutcome
					for try := 0; try < 5 && client.IsUnknown(err); try++ {
						_, err = cl.Put(ctx10(t), &metapb.PutRequest{Key: []byte(fmt.Sprintf("big/%04d", i)), Value: []byte("v"), Lease: lease})
					}
					if err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("put: %v", err)
		}
		w := startWatch(t, cl, &metapb.WatchRequest{Space: metapb.WatchSpace_WATCH_SPACE_KV, Prefix: []byte("big/")})
		w.started(t)
		if rv := must(cl.LeaseRevoke(ctx10(t), &metapb.LeaseRevokeRequest{Id: lease}))(t); rv.Deleted != n {
			t.Fatalf("revoke: got %d deleted, want %d", rv.Deleted, n)
		}
		evs := w.waitEvents(t, n)
		seen := map[string]bool{}
		revs := map[string]uint64{}
		for _, ev := range evs {
			if ev.Type != metapb.WatchEvent_DELETE || seen[string(ev.Kv.Key)] {
				t.Fatalf("got %v (seen before: %v), want one DELETE per key", ev, seen[string(ev.Kv.Key)])
			}
			seen[string(ev.Kv.Key)] = true
			if revs[ev.Group] != 0 && revs[ev.Group] != ev.Revision {
				t.Fatalf("%s: deletes at revisions %d and %d, want one revision", ev.Group, revs[ev.Group], ev.Revision)
			}
			revs[ev.Group] = ev.Revision
		}
		w.waitRevisions(t, revs)
		if evs, _, _ := w.snapshot(); len(evs) != n {
			t.Fatalf("got %d events, want %d", len(evs), n)
		}
	})
	t.Run("bad input", func(t *testing.T) {
		cases := []struct {
			req   *metapb.WatchRequest
			field string
		}{
			{&metapb.WatchRequest{Space: 99}, "space"},
			{&metapb.WatchRequest{ResourceKind: metapb.ResourceKind_RESOURCE_KIND_TOPIC}, "resource_kind"},
			{&metapb.WatchRequest{Space: metapb.WatchSpace_WATCH_SPACE_RESOURCES, ResourceKind: 77}, "resource_kind"},
			{&metapb.WatchRequest{StartRevisions: map[string]uint64{"metadata-0": 1}}, "start_revisions[metadata-0]"},
			{&metapb.WatchRequest{ProgressIntervalMs: 50}, "progress_interval_ms"},
			{&metapb.WatchRequest{Prefix: make([]byte, metapb.MaxKeyBytes+1)}, "prefix"},
		}
		for _, tc := range cases {
			err := cl.Watch(ctx10(t), tc.req, func(*metapb.WatchResponse) error { return nil })
			wantStatus(t, err, codes.InvalidArgument, metapb.ReasonInvalidArgument, tc.field)
		}
	})
	t.Run("callback error ends the watch", func(t *testing.T) {
		boom := errors.New("boom")
		if err := cl.Watch(ctx10(t), &metapb.WatchRequest{}, func(*metapb.WatchResponse) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("got %v, want the callback's error", err)
		}
	})
	t.Run("compacted", func(t *testing.T) {
		for i := 0; i < 20; i++ {
			fillerPut(t, cl, fmt.Sprintf("cmp/%d", i), "v")
		}
		// Older than the retention: the leaders compact.
		clk.Advance(2 * time.Minute)
		from := map[string]uint64{"data-0": 1, "data-1": 1}
		var err error
		poll.ForTrue(t, "a watch from revision 1 to be refused as compacted", 20*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err = cl.Watch(ctx, &metapb.WatchRequest{StartRevisions: from}, func(*metapb.WatchResponse) error { return nil })
			return !errors.Is(err, context.DeadlineExceeded)
		})
		info := wantStatus(t, err, codes.FailedPrecondition, metapb.ReasonCompacted, "")
		g, rev, ok := client.Compacted(err)
		if !ok || from[g] == 0 || rev <= 1 || info.Metadata[metapb.MetaGroup] != g {
			t.Fatalf("compacted: got group %q, revision %d (%v), want a data group compacted above 1", g, rev, ok)
		}
		// From the compacted revision on, the watch works.
		from[g] = rev
		other := "data-0"
		if g == other {
			other = "data-1"
		}
		delete(from, other)
		w := startWatch(t, cl, &metapb.WatchRequest{StartRevisions: from})
		if s := w.started(t); s[g] != rev-1 {
			t.Fatalf("watch from the compacted revision: got start %d, want %d", s[g], rev-1)
		}
	})
	t.Run("orderly stop ends the node's watches", func(t *testing.T) {
		id := c.IDs()[2]
		w := startWatch(t, c.Client(id), &metapb.WatchRequest{})
		w.started(t)
		c.Stop(id) // returns only once every stream on the node has ended
	})
}

// A watch survives the restart of the node serving it: resumed on the
// same or another node from the last delivered revision + 1, it delivers
// exactly the committed changes, without gap or duplicate.
func TestWatchResumeAfterRestart(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{DataGroups: 2})
	writer := c.Client("")
	ids := c.IDs()
	a, b := c.Get(ids[0]), c.Get(ids[1])
	// The watching client knows only A and B; it serves from one of them.
	resumes := &resumeCounter{}
	wcl, err := client.New(client.Config{Endpoints: []string{a.Addr, b.Addr}, Dialer: c.Net.Dialer(metanodetest.Client),
		Logger: slog.New(resumes)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wcl.Close() })
	w := startWatch(t, wcl, &metapb.WatchRequest{Space: metapb.WatchSpace_WATCH_SPACE_KV, Prefix: []byte("r/"), ProgressIntervalMs: 200})
	start := w.started(t)

	// Writers keep going through everything below; every put has a unique
	// value. acked: definite; maybe: outcome unknown.
	var mu sync.Mutex
	acked := map[string]change{}
	maybe := map[string]bool{}
	high := map[string]uint64{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for wr := 0; wr < 3; wr++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				k, v := fmt.Sprintf("r/%d/%d", wr, i%7), fmt.Sprintf("v%d-%d", wr, i)
				pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
				resp, err := writer.Put(pctx, &metapb.PutRequest{Key: []byte(k), Value: []byte(v)})
				pcancel()
				mu.Lock()
				switch {
				case err == nil:
					acked[v] = change{resp.Header.Group, resp.Header.Revision, metapb.WatchEvent_PUT, k, v}
					high[resp.Header.Group] = max(high[resp.Header.Group], resp.Header.Revision)
				case client.IsUnknown(err):
					maybe[v] = true
				}
				mu.Unlock()
			}
		}()
	}
	stopWriters := func() { cancel(); wg.Wait() }
	defer stopWriters()
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	progressTo := func(n int) {
		t.Helper()
		poll.ForTrue(t, fmt.Sprintf("%d acknowledged writes", n), 30*time.Second, func() bool { return ackedCount() >= n })
	}
	// Whichever of A and B serves the watch, it is restarted once.
	progressTo(50)
	for _, n := range []*metanodetest.Node{a, b} {
		c.Crash(n.ID)
		progressTo(ackedCount() + 50)
		if err := c.Restart(n.ID); err != nil {
			t.Fatalf("restart %s: %v", n.ID, err)
		}
		progressTo(ackedCount() + 50)
	}
	stopWriters()
	mu.Lock()
	target := cloneRevs(high)
	mu.Unlock()
	w.waitRevisions(t, target)
	w.stop()
	evs, _, _ := w.snapshot()
	got := inGroupOrder(t, kvChanges(evs))

	// Every acknowledged write is there; every event is a write that was
	// made (acknowledged or of unknown outcome).
	seen := map[string]change{}
	for _, ch := range got {
		seen[ch.value] = ch
		if _, ok := acked[ch.value]; !ok && !maybe[ch.value] {
			t.Fatalf("event %v matches no write", ch)
		}
	}
	for v, ch := range acked {
		if seen[v] != ch {
			t.Fatalf("acknowledged write %v: watch saw %v", ch, seen[v])
		}
	}
	// And nothing is missing between them: a fresh watch of the same
	// range through the third node sees exactly the same changes.
	from := map[string]uint64{}
	for g, r := range start {
		from[g] = r + 1
	}
	fresh := startWatch(t, c.Client(ids[2]), &metapb.WatchRequest{Space: metapb.WatchSpace_WATCH_SPACE_KV, Prefix: []byte("r/"), StartRevisions: from})
	fresh.waitRevisions(t, target)
	fresh.stop()
	fevs, _, _ := fresh.snapshot()
	want := inGroupOrder(t, kvChanges(fevs))
	var upTo []change
	for _, ch := range want {
		if ch.rev <= target[ch.group] {
			upTo = append(upTo, ch)
		}
	}
	var gotUpTo []change
	for _, ch := range got {
		if ch.rev <= target[ch.group] {
			gotUpTo = append(gotUpTo, ch)
		}
	}
	if !slices.Equal(gotUpTo, upTo) {
		t.Fatalf("resumed watch: got %d changes, a fresh watch %d; first difference at %d", len(gotUpTo), len(upTo), firstDiff(gotUpTo, upTo))
	}
	if resumes.n.Load() == 0 {
		t.Fatalf("the watch was never interrupted: the test proved nothing")
	}
	t.Logf("%d changes watched across two node restarts (%d resumes), %d acknowledged, %d unknown",
		len(got), resumes.n.Load(), len(acked), len(maybe))
}

// resumeCounter is a slog handler that counts the client's watch resumes.
type resumeCounter struct{ n atomic.Int64 }

func (h *resumeCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *resumeCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "watch interrupted") {
		h.n.Add(1)
	}
	return nil
}
func (h *resumeCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *resumeCounter) WithGroup(string) slog.Handler      { return h }

func cloneRevs(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func firstDiff(a, b []change) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
