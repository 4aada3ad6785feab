package metanode_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/verify/poll"
)

// scrape reads a node's /metrics and parses it as Prometheus does.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: got status %d, want 200", addr, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics of %s: %v", addr, err)
	}
	return fams
}

// value is the sum of a family's samples whose labels include want (a
// histogram or a summary counts its observations).
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	sum := 0.0
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		case m.Summary != nil:
			sum += float64(m.Summary.GetSampleCount())
		}
	}
	return sum
}

// total sums a family over every running node of c.
func total(t *testing.T, c *metanodetest.Cluster, name string, want map[string]string) float64 {
	t.Helper()
	sum := 0.0
	for _, id := range c.IDs() {
		if n := c.Running(id); n != nil {
			sum += value(scrape(t, n.MetricsAddr()), name, want)
		}
	}
	return sum
}

func TestMetricsScrape(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{Metrics: true})
	cl := c.Client("")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	put := map[string]string{"method": "/meta.v1.KV/Put"}
	putsBefore := total(t, c, "meta_grpc_handled_total", put)
	appliedBefore := total(t, c, "meta_group_applied_index", map[string]string{"group": "data-0"})
	changesBefore := total(t, c, "meta_group_leader_changes_total", map[string]string{"group": "data-0"})

	// A watch stays open while the families are read.
	wctx, wcancel := context.WithCancel(ctx)
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- cl.Watch(wctx, &metapb.WatchRequest{Space: metapb.WatchSpace_WATCH_SPACE_KV, Prefix: []byte("m/")},
			func(*metapb.WatchResponse) error { return nil })
	}()
	defer func() { wcancel(); <-watchDone }()

	for i := range 20 {
		if _, err := cl.Put(ctx, &metapb.PutRequest{Key: fmt.Appendf(nil, "m/%d", i), Value: []byte("v")}); err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	// A refused put counts as an error with meta's reason and class.
	if _, err := cl.Put(ctx, &metapb.PutRequest{Key: nil, Value: []byte("v")}); err == nil {
		t.Fatal("put with an empty key: got nil error, want INVALID_ARGUMENT")
	}
	// A leadership transfer is a leader change every replica sees.
	leader := c.WaitLeader("data-0", 30*time.Second)
	if _, err := cl.TransferLeader(ctx, "data-0", ""); err != nil {
		t.Fatalf("transfer leader: %v", err)
	}
	poll.ForTrue(t, "a new data-0 leader", 30*time.Second, func() bool {
		l := c.Leader("data-0")
		return l != "" && l != leader
	})

	fams := scrape(t, c.Running("n1").MetricsAddr())
	for _, name := range []string{
		"meta_grpc_handled_total", "meta_grpc_handling_seconds", "meta_grpc_streams_open", "meta_watches_open",
		"meta_group_term", "meta_group_is_leader", "meta_group_has_leader", "meta_group_commit_index",
		"meta_group_applied_index", "meta_group_last_log_index", "meta_group_snapshot_index", "meta_group_halted",
		"meta_group_proposal_queue", "meta_group_entries_inflight", "meta_group_leader_changes_total",
		"meta_node_ready", "meta_node_groups_hosted",
		"meta_rocksdb_live_sst_bytes", "meta_rocksdb_pending_compaction_bytes", "meta_rocksdb_memtable_bytes",
		"meta_rocksdb_write_stopped", "meta_rocksdb_block_cache_hits_total", "meta_rocksdb_block_cache_usage_bytes",
		"meta_rocksdb_stall_seconds_total", "meta_rocksdb_written_bytes_total", "meta_controller_active",
	} {
		if fams[name] == nil {
			t.Errorf("family %s missing from /metrics", name)
		}
	}
	// The cluster version (metanodetest.Start waits for it to rise to this
	// release's level) and the node's own level.
	for _, name := range []string{"meta_cluster_version", "meta_node_feature_level"} {
		if v := value(fams, name, nil); v != float64(sm.FeatureLevel) {
			t.Errorf("%s: got %v, want %d", name, v, sm.FeatureLevel)
		}
	}
	// The dashboard is built on these figures only.
	dash, err := os.ReadFile("../ci/deploy/grafana/meta.json")
	if err != nil {
		t.Fatal(err)
	}
	exposed := map[string]bool{}
	for _, id := range c.IDs() {
		for name := range scrape(t, c.Running(id).MetricsAddr()) {
			exposed[name] = true
		}
	}
	for _, name := range regexp.MustCompile(`meta_[a-z_]+`).FindAllString(string(dash), -1) {
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suffix); ok && exposed[b] {
				base = b
			}
		}
		if !exposed[base] {
			t.Errorf("the Grafana dashboard uses %s, which no node exposes", name)
		}
	}
	poll.For(t, "the figures to move", 30*time.Second, func() error {
		checks := []struct {
			name   string
			labels map[string]string
			min    float64
		}{
			{"meta_grpc_handled_total", put, putsBefore + 20},
			{"meta_grpc_errors_total", map[string]string{"method": "/meta.v1.KV/Put", "reason": metapb.ReasonInvalidArgument, "class": "final"}, 1},
			{"meta_grpc_handling_seconds", put, putsBefore + 20},
			{"meta_watches_open", nil, 1},
			{"meta_group_applied_index", map[string]string{"group": "data-0"}, appliedBefore + 3*20},
			{"meta_group_leader_changes_total", map[string]string{"group": "data-0"}, changesBefore + 3},
			{"meta_group_batch_ops", map[string]string{"group": "data-0"}, 1},
			{"meta_group_apply_seconds", map[string]string{"group": "data-0"}, 1},
			{"meta_group_is_leader", nil, float64(len(c.Running("n1").Status()))},
			{"meta_rocksdb_written_bytes_total", nil, 1},
			{"meta_controller_active", nil, 1},
			{"meta_node_ready", nil, 3},
		}
		var bad []string
		for _, ch := range checks {
			if got := total(t, c, ch.name, ch.labels); got < ch.min {
				bad = append(bad, fmt.Sprintf("%s%v = %v, want >= %v", ch.name, ch.labels, got, ch.min))
			}
		}
		if len(bad) > 0 {
			return fmt.Errorf("%s", strings.Join(bad, "; "))
		}
		return nil
	})
}

// readyz returns the status code and body of a node's /readyz.
func readyz(addr string) (int, string, error) {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestHealthFollowsLeadership(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{Metrics: true})
	n1 := c.Running("n1")
	conn, err := grpc.NewClient(n1.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	health := func(service string) healthpb.HealthCheckResponse_ServingStatus {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			return healthpb.HealthCheckResponse_UNKNOWN
		}
		return r.Status
	}
	expect := func(what string, code int, st healthpb.HealthCheckResponse_ServingStatus, body string) {
		t.Helper()
		poll.For(t, what, 60*time.Second, func() error {
			got, b, err := readyz(n1.MetricsAddr())
			if err != nil {
				return err
			}
			if got != code || !strings.Contains(b, body) {
				return fmt.Errorf("/readyz: got %d %q, want %d containing %q", got, b, code, body)
			}
			for _, svc := range []string{"", "meta.v1.KV", "meta.v1.Watch"} {
				if s := health(svc); s != st {
					return fmt.Errorf("health %q: got %v, want %v", svc, s, st)
				}
			}
			return nil
		})
	}
	expect("n1 ready", http.StatusOK, healthpb.HealthCheckResponse_SERVING, "ok")
	if resp, err := http.Get("http://" + n1.MetricsAddr() + "/livez"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/livez: got %v %v, want 200", resp, err)
	} else {
		resp.Body.Close()
	}

	// Two of three gone: no group can keep or elect a leader.
	c.Stop("n2")
	c.Stop("n3")
	expect("n1 not ready without a quorum", http.StatusServiceUnavailable, healthpb.HealthCheckResponse_NOT_SERVING, "has no leader")
	// The raft service itself keeps serving: it is how a leader is elected.
	for _, svc := range []string{"meta.raft.v1.RaftService", metapb.HealthStarted} {
		if s := health(svc); s != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %s: got %v, want SERVING", svc, s)
		}
	}

	if err := c.Restart("n2"); err != nil {
		t.Fatalf("restart n2: %v", err)
	}
	expect("n1 ready again with a quorum", http.StatusOK, healthpb.HealthCheckResponse_SERVING, "ok")
}

// watchKeys watches the keys under prefix through cl until the test ends
// (or ctx does), sending each event's key to got; started waits for the
// watch's first answer, which gives its start point.
func watchKeys(t *testing.T, ctx context.Context, cl *client.Client, prefix string) (got chan string, started func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	got = make(chan string, 100)
	first := make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		done <- cl.Watch(ctx, &metapb.WatchRequest{Space: metapb.WatchSpace_WATCH_SPACE_KV, Prefix: []byte(prefix), ProgressIntervalMs: 300},
			func(r *metapb.WatchResponse) error {
				once.Do(func() { close(first) })
				for _, ev := range r.Events {
					got <- string(ev.Kv.Key)
				}
				return nil
			})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return got, func() {
		t.Helper()
		select {
		case <-first:
		case <-ctx.Done():
			t.Fatal("the watch never answered")
		}
	}
}

// A watch whose node goes silent (blackholed: nothing answers, nothing
// resets) notices it and resumes on another node without losing or
// repeating an event.
func TestWatchLeavesSilentNode(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{Metrics: true})
	cl := c.Client("")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// The gauge below counts the stream from its opening, while its start
	// is still being read: a put before the watch's first answer may fall
	// before the start and is then rightly never delivered.
	got, started := watchKeys(t, ctx, cl, "w/")
	// The node serving the watch is the one that counts it open.
	var serving string
	poll.ForTrue(t, "the watch to open", 30*time.Second, func() bool {
		for _, id := range c.IDs() {
			if value(scrape(t, c.Running(id).MetricsAddr()), "meta_watches_open", nil) == 1 {
				serving = id
				return true
			}
		}
		return false
	})
	started()
	var other string
	for _, id := range c.IDs() {
		if id != serving {
			other = id
			break
		}
	}
	writer := c.Client(other)
	want := []string{}
	put := func(i int) {
		k := fmt.Sprintf("w/%03d", i)
		if _, err := writer.Put(ctx, &metapb.PutRequest{Key: []byte(k), Value: []byte("v")}); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		want = append(want, k)
	}
	put(0)
	select {
	case k := <-got:
		if k != "w/000" {
			t.Fatalf("first event: got %s, want w/000", k)
		}
	case <-ctx.Done():
		t.Fatal("the watch never delivered w/000")
	}
	want = want[1:]

	t.Logf("blackholing the watch's node %s", serving)
	c.Net.Block(metanodetest.Client, serving)
	c.Net.Block(serving, metanodetest.Client)
	defer c.Net.Heal()
	for i := 1; i <= 10; i++ {
		put(i)
	}
	for _, w := range want {
		select {
		case k := <-got:
			if k != w {
				t.Fatalf("event: got %s, want %s (lost or reordered)", k, w)
			}
		case <-ctx.Done():
			t.Fatalf("watch did not resume on another node: still waiting for %s", w)
		}
	}
	c.Net.Heal()
	select {
	case k := <-got:
		t.Fatalf("unexpected event %s (a repeat?)", k)
	case <-time.After(time.Second):
	}
}
