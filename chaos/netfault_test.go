package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// reachTable is an expected reachability matrix, written as
// "from>to,to;from>..." for readability; missing senders reach nobody.
func reachTable(nodes []string, spec string) map[string][]string {
	m := map[string][]string{}
	for _, n := range nodes {
		m[n] = []string{}
	}
	for _, part := range strings.Split(spec, ";") {
		from, tos, ok := strings.Cut(part, ">")
		if !ok {
			continue
		}
		if tos != "" {
			m[from] = strings.Split(tos, ",")
		}
		slices.Sort(m[from])
	}
	return m
}

func diffMatrix(got, want map[string][]string) string {
	var b strings.Builder
	for _, from := range slices.Sorted(maps.Keys(want)) {
		if !slices.Equal(got[from], want[from]) {
			fmt.Fprintf(&b, "\n  %s reaches: got %v, want %v", from, got[from], want[from])
		}
	}
	return b.String()
}

func TestNetworkFaults(t *testing.T) {
	requireTools(t)
	c := startStandins(t, 5)
	nc := newNodeClient(t, c)
	nodes := c.Nodes()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	if got, want := nc.matrix(t, ctx), fullMatrix(nodes); diffMatrix(got, want) != "" {
		t.Fatalf("healthy cluster:%s", diffMatrix(got, want))
	}

	partitions := []struct {
		name  string
		apply func() error
		want  string
	}{
		{
			name:  "isolate n1",
			apply: func() error { return c.Isolate(ctx, "n1") },
			want:  "n1>;n2>n3,n4,n5;n3>n2,n4,n5;n4>n2,n3,n5;n5>n2,n3,n4",
		},
		{
			name:  "majority n1 n2 n3, minority n4 n5",
			apply: func() error { return c.Partition(ctx, [][]string{{"n1", "n2", "n3"}, {"n4", "n5"}}) },
			want:  "n1>n2,n3;n2>n1,n3;n3>n1,n2;n4>n5;n5>n4",
		},
		{
			name:  "three groups",
			apply: func() error { return c.Partition(ctx, [][]string{{"n1"}, {"n2", "n3"}, {"n4", "n5"}}) },
			want:  "n1>;n2>n3;n3>n2;n4>n5;n5>n4",
		},
		{
			name:  "bridge n3 between n1 n2 and n4 n5",
			apply: func() error { return c.Bridge(ctx, []string{"n1", "n2"}, []string{"n4", "n5"}, "n3") },
			want:  "n1>n2,n3;n2>n1,n3;n3>n1,n2,n4,n5;n4>n3,n5;n5>n3,n4",
		},
		{
			name:  "one way n1 to n2",
			apply: func() error { return c.DropOneWay(ctx, "n1", "n2") },
			want:  "n1>n3,n4,n5;n2>n1,n3,n4,n5;n3>n1,n2,n4,n5;n4>n1,n2,n3,n5;n5>n1,n2,n3,n4",
		},
		{
			name: "two one-way drops compose",
			apply: func() error {
				if err := c.DropOneWay(ctx, "n1", "n2"); err != nil {
					return err
				}
				return c.DropOneWay(ctx, "n3", "n1")
			},
			want: "n1>n3,n4,n5;n2>n1,n3,n4,n5;n3>n2,n4,n5;n4>n1,n2,n3,n5;n5>n1,n2,n3,n4",
		},
	}
	for _, tt := range partitions {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.apply(); err != nil {
				t.Fatal(err)
			}
			// Clients are not partitioned: the matrix itself is driven from
			// the host through every node's endpoint.
			if got, want := nc.matrix(t, ctx), reachTable(nodes, tt.want); diffMatrix(got, want) != "" {
				t.Errorf("reachability:%s", diffMatrix(got, want))
			}
			nc.mustHeal(t, ctx, nodes)
		})
	}

	t.Run("partition holds across a restart", func(t *testing.T) {
		if err := c.Isolate(ctx, "n2"); err != nil {
			t.Fatal(err)
		}
		restart(t, ctx, c, "n2")
		want := reachTable(nodes, "n1>n3,n4,n5;n2>;n3>n1,n4,n5;n4>n1,n3,n5;n5>n1,n3,n4")
		if got := nc.matrix(t, ctx); diffMatrix(got, want) != "" {
			t.Errorf("after restart of the isolated node:%s", diffMatrix(got, want))
		}
		nc.mustHeal(t, ctx, nodes)
	})

	t.Run("loss", func(t *testing.T) {
		base := nc.rtt(t, ctx, "n1", "n2", 200, 2*time.Millisecond, time.Second)
		if err := c.LossLink(ctx, "n1", "n2", 0.5); err != nil {
			t.Fatal(err)
		}
		lossy := nc.rtt(t, ctx, "n1", "n2", 200, 2*time.Millisecond, time.Second)
		other := nc.rtt(t, ctx, "n1", "n3", 200, 2*time.Millisecond, time.Second)
		t.Logf("pongs of 200: healthy %d, 50%% loss each way %d (expect about 50), unaffected link %d",
			base.Received, lossy.Received, other.Received)
		if base.Received < 190 {
			t.Errorf("healthy link: got %d of 200 pongs, want at least 190", base.Received)
		}
		if lossy.Received > 120 || lossy.Received == 0 {
			t.Errorf("lossy link: got %d of 200 pongs, want some but at most 120", lossy.Received)
		}
		if other.Received < 190 {
			t.Errorf("unaffected link n1-n3: got %d of 200 pongs, want at least 190", other.Received)
		}
		if err := c.LossNode(ctx, "n4", 1); err != nil {
			t.Fatal(err)
		}
		if r := nc.rtt(t, ctx, "n5", "n4", 20, 2*time.Millisecond, 500*time.Millisecond); r.Received != 0 {
			t.Errorf("node with 100%% loss: got %d of 20 pongs, want 0", r.Received)
		}
		if err := c.HealLoss(ctx); err != nil {
			t.Fatal(err)
		}
		if r := nc.rtt(t, ctx, "n1", "n2", 200, 2*time.Millisecond, time.Second); r.Received < 190 {
			t.Errorf("after HealLoss: got %d of 200 pongs, want at least 190", r.Received)
		}
	})

	t.Run("delay", func(t *testing.T) {
		base := nc.rtt(t, ctx, "n1", "n2", 20, 10*time.Millisecond, time.Second)
		if err := c.Delay(ctx, "n1", "n2", 200*time.Millisecond, 0); err != nil {
			t.Fatal(err)
		}
		slow := nc.rtt(t, ctx, "n1", "n2", 20, 10*time.Millisecond, 2*time.Second)
		other := nc.rtt(t, ctx, "n1", "n3", 20, 10*time.Millisecond, time.Second)
		t.Logf("median RTT: healthy %.2fms, 200ms delay each way %.2fms (expect about 400), unaffected link %.2fms",
			base.median(), slow.median(), other.median())
		if slow.Received != 20 {
			t.Errorf("delayed link: got %d of 20 pongs, want 20 (delay must not drop)", slow.Received)
		}
		if slow.median() < 300 {
			t.Errorf("delayed link: got median RTT %.1fms, want above 300ms", slow.median())
		}
		if other.median() > 150 {
			t.Errorf("unaffected link n1-n3: got median RTT %.1fms, want below 150ms", other.median())
		}

		// The delay reader is per namespace: a restart must get a new one.
		// n2 holds the reader for n1 -> n2.
		restart(t, ctx, c, "n2")
		if r := nc.rtt(t, ctx, "n2", "n1", 10, 10*time.Millisecond, 2*time.Second); r.Received != 10 || r.median() < 300 {
			t.Errorf("after n2 restarted: got %d of 10 pongs, median %.1fms; want 10 above 300ms", r.Received, r.median())
		}

		if err := c.Delay(ctx, "n1", "n2", 100*time.Millisecond, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		jit := nc.rtt(t, ctx, "n1", "n2", 40, 10*time.Millisecond, 2*time.Second)
		lo, hi := slices.Min(jit.RTTsMS), slices.Max(jit.RTTsMS)
		t.Logf("100ms±100ms each way: RTT min %.1fms max %.1fms", lo, hi)
		if jit.Received != 40 || hi-lo < 50 {
			t.Errorf("jitter: got %d of 40 pongs, RTT spread %.1fms; want 40 and a spread above 50ms", jit.Received, hi-lo)
		}

		if err := c.DelayNode(ctx, "n5", 100*time.Millisecond, 0); err != nil {
			t.Fatal(err)
		}
		if r := nc.rtt(t, ctx, "n4", "n5", 10, 10*time.Millisecond, 2*time.Second); r.median() < 150 {
			t.Errorf("DelayNode n5: n4->n5 median RTT %.1fms, want above 150ms", r.median())
		}

		if err := c.HealDelay(ctx); err != nil {
			t.Fatal(err)
		}
		if r := nc.rtt(t, ctx, "n1", "n2", 20, 10*time.Millisecond, time.Second); r.Received != 20 || r.median() > 150 {
			t.Errorf("after HealDelay: got %d of 20 pongs, median %.1fms; want 20 below 150ms", r.Received, r.median())
		}
		c.mu.Lock()
		queues := len(c.queues)
		c.mu.Unlock()
		if queues != 0 {
			t.Errorf("after HealDelay: got %d delay readers, want 0", queues)
		}
	})

	t.Run("delayed TCP still flows", func(t *testing.T) {
		const size = 4 << 20
		fetch := func() (int, float64) {
			t.Helper()
			var r struct {
				Bytes int     `json:"bytes"`
				MS    float64 `json:"ms"`
			}
			b := nc.mustDo(t, ctx, http.MethodGet, "n1", fmt.Sprintf("/fetch?to=n3&n=%d", size), nil)
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatalf("fetch: %v: %s", err, b)
			}
			return r.Bytes, r.MS
		}
		_, baseMS := fetch()
		if err := c.Delay(ctx, "n1", "n3", 50*time.Millisecond, 10*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		// The host's own request to n1 is not delayed; n1's TCP to n3 is.
		n, ms := fetch()
		t.Logf("4 MiB over TCP n3->n1: healthy %.1fms, 50±10ms delay each way %.1fms", baseMS, ms)
		if n != size {
			t.Errorf("delayed fetch: got %d bytes, want %d", n, size)
		}
		if ms < 150 {
			// Handshake plus request: two round trips of at least 80ms.
			t.Errorf("delayed fetch: took %.1fms, want above 150ms", ms)
		}
		if err := c.HealNetwork(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("heal restores everything", func(t *testing.T) {
		if err := c.Isolate(ctx, "n3"); err != nil {
			t.Fatal(err)
		}
		if err := c.LossNode(ctx, "n1", 0.3); err != nil {
			t.Fatal(err)
		}
		if err := c.Delay(ctx, "n4", "n5", 50*time.Millisecond, 0); err != nil {
			t.Fatal(err)
		}
		if err := c.HealNetwork(ctx); err != nil {
			t.Fatal(err)
		}
		if got := c.NetworkFaults(); len(got) != 0 {
			t.Errorf("NetworkFaults after HealNetwork: got %v, want none", got)
		}
		if got, want := nc.matrix(t, ctx), fullMatrix(nodes); diffMatrix(got, want) != "" {
			t.Errorf("after HealNetwork:%s", diffMatrix(got, want))
		}
		if r := nc.rtt(t, ctx, "n4", "n5", 20, 10*time.Millisecond, time.Second); r.Received != 20 || r.median() > 150 {
			t.Errorf("after HealNetwork: n4->n5 %d of 20 pongs, median %.1fms; want 20 below 150ms", r.Received, r.median())
		}
	})
}
