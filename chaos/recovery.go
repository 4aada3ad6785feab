package chaos

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify"
)

// CheckerRecovery and CheckerNodes are the checkers chaos adds to
// verify's in summary.json.
const (
	// CheckerRecovery: after the schedule healed, every group took a
	// write within the recovery timeout (30 s); after each fault's heal,
	// likewise unless the next fault began first.
	CheckerRecovery = "recovery"
	// CheckerNodes: no node log holds a panic, a fatal runtime error or a
	// data race report, and no node went down or left the membership
	// without a fault doing it.
	CheckerNodes = "nodes"
)

// Recovery probes write through the nemesis's unpinned client, so each
// write goes to its group's leader wherever it is. Their keys
// ("chaos-probe/<n>") and consumer groups ("chaos-probe-<n>") are outside
// every workload prefix, so they never appear in a checked history; they
// do count in the replicas' state hashes, like any write.

// startProbe starts a recovery probe for the heal of fault id (0: HealAll).
func (m *Nemesis) startProbe(fault int) {
	select {
	case <-m.stop:
		return // closed: nobody will read it
	default:
	}
	r := &Recovery{Fault: fault, Healed: time.Now(), Writable: map[string]time.Duration{}, LastErr: map[string]string{}}
	m.mu.Lock()
	m.recoveries = append(m.recoveries, r)
	m.mu.Unlock()
	m.probes.Add(1)
	go func() {
		defer m.probes.Done()
		m.probe(r)
	}()
}

// interruptProbes marks the probes that have not seen every group writable:
// a fault is beginning.
func (m *Nemesis) interruptProbes() {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.recoveries {
		if r.Interrupted.IsZero() && (r.Groups == nil || len(r.Writable) < len(r.Groups)) {
			r.Interrupted = now
		}
	}
}

// Recoveries waits until every probe has ended (each ends at the latest
// RecoveryTimeout after its heal) and returns their results in order.
func (m *Nemesis) Recoveries() []Recovery {
	m.probes.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Recovery, len(m.recoveries))
	for i, r := range m.recoveries {
		out[i] = *r
		out[i].Writable = maps.Clone(r.Writable)
		out[i].LastErr = maps.Clone(r.LastErr)
		out[i].Groups = slices.Clone(r.Groups)
	}
	return out
}

func (m *Nemesis) probe(r *Recovery) {
	ctx, cancel := context.WithDeadline(context.Background(), r.Healed.Add(m.cfg.RecoveryTimeout))
	defer cancel()
	go func() {
		select {
		case <-m.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	var groups []string
	for {
		var err error
		if groups, err = m.topology(ctx); err == nil {
			break
		}
		if !sleepCtx(ctx, 200*time.Millisecond) {
			m.mu.Lock()
			r.LastErr["topology"] = err.Error()
			m.mu.Unlock()
			return
		}
	}
	k, d := groupCounts(groups)
	m.mu.Lock()
	r.Groups = slices.Clone(groups)
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Go(func() {
			for attempt := 0; ; attempt++ {
				actx, acancel := context.WithTimeout(ctx, m.cfg.OpTimeout)
				err := m.probeWrite(actx, g, k, d, r.Fault, attempt)
				acancel()
				m.mu.Lock()
				if err == nil {
					r.Writable[g] = time.Since(r.Healed)
					delete(r.LastErr, g)
				} else {
					r.LastErr[g] = err.Error()
				}
				m.mu.Unlock()
				if err == nil || !sleepCtx(ctx, 200*time.Millisecond) {
					return
				}
			}
		})
	}
	wg.Wait()
}

// probeWrite makes one write to group g of a cluster with k offset and d
// data groups (metadata-0: a linearizable Members read).
func (m *Nemesis) probeWrite(ctx context.Context, g string, k, d, fault, attempt int) error {
	value := fmt.Sprintf("fault %d attempt %d at %s", fault, attempt, time.Now().UTC().Format(time.RFC3339Nano))
	switch {
	case g == metapb.MetadataGroup:
		_, err := m.adm.Members(ctx)
		return err
	case strings.HasPrefix(g, "data-"):
		key := probeName("chaos-probe/", func(s string) bool { return metapb.DataGroupFor([]byte(s), d) == g })
		_, err := m.adm.Put(ctx, &metapb.PutRequest{Key: []byte(key), Value: []byte(value)})
		return err
	case strings.HasPrefix(g, "offset-"):
		cg := probeName("chaos-probe-", func(s string) bool { return metapb.OffsetGroupFor(s, k) == g })
		_, err := m.adm.CommitOffsets(ctx, &metapb.CommitOffsetsRequest{Offsets: []*metapb.OffsetCommit{{
			Group: cg, Topic: "probe", Partition: 0, Offset: time.Now().UnixNano(), Metadata: value,
		}}})
		return err
	}
	return fmt.Errorf("chaos: probe: unknown group %q", g)
}

// probeName returns the first prefix+<n> that in accepts.
func probeName(prefix string, in func(string) bool) string {
	for i := 0; ; i++ {
		if s := fmt.Sprintf("%s%d", prefix, i); in(s) {
			return s
		}
	}
}

// groupCounts counts offset and data groups in a group list.
func groupCounts(groups []string) (k, d int) {
	for _, g := range groups {
		switch {
		case strings.HasPrefix(g, "offset-"):
			k++
		case strings.HasPrefix(g, "data-"):
			d++
		}
	}
	return k, d
}

// CheckRecovery judges the probes: the last one (HealAll's) must see every
// group writable within timeout; each earlier one too, unless the next
// fault interrupted it first. No probe at all is unknown.
func CheckRecovery(rs []Recovery, timeout time.Duration) verify.CheckResult {
	res := verify.CheckResult{Checker: CheckerRecovery, Verdict: verify.Valid, Recorded: true}
	if len(rs) == 0 {
		res.Verdict = verify.Unknown
		res.Details = "no heal, no probe"
		return res
	}
	interrupted, worst := 0, time.Duration(0)
	var slowest string
	for _, r := range rs {
		res.Ops++
		var missing []string
		for _, g := range r.Groups {
			w, ok := r.Writable[g]
			if !ok || w > timeout {
				missing = append(missing, g)
				continue
			}
			if w > worst {
				worst, slowest = w, fmt.Sprintf("%s after fault %d", g, r.Fault)
			}
		}
		if r.Groups == nil {
			missing = append(missing, "topology")
		}
		if len(missing) == 0 {
			continue
		}
		if !r.Interrupted.IsZero() && r.Interrupted.Sub(r.Healed) < timeout {
			interrupted++
			continue
		}
		res.Verdict = verify.Invalid
		name := fmt.Sprintf("heal of fault %d", r.Fault)
		if r.Fault == 0 {
			name = "final heal"
		}
		for _, g := range missing {
			res.Failing = append(res.Failing, fmt.Sprintf("%s: %s (%s)", name, g, r.LastErr[g]))
		}
	}
	res.Partitions = len(rs)
	res.Details = fmt.Sprintf("%d heals probed, %d interrupted by the next fault; slowest group to take a write: %s (%s); limit %s",
		len(rs), interrupted, worst.Round(time.Millisecond), slowest, timeout)
	return res
}
