package verify

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/metamq/meta/rpc/metapb"
)

// Recovery windows.
//
// After each fault heals, Run waits until the cluster serves again: every
// group takes a write (metadata-0: a linearizable Members read), probed
// through the unpinned admin connection so that each write goes to its
// group's leader wherever it is. The time from the end of the heal to the
// slowest group's first success is the fault's recovery time. Only then
// does the schedule go on: the next fault begins its planned gap after
// the recovery (never earlier than its planned start), so a slow heal or
// a slow recovery moves the rest of the schedule later instead of
// squeezing the window after the fault. The workload's end moves with it.
// A cluster that does not serve again within RunConfig.RecoveryTimeout
// fails the "recovery" checker, naming the groups and their last errors;
// the schedule then goes on regardless.
//
// Probe keys ("verify-probe/<n>") and consumer groups ("verify-probe-<n>")
// are outside every workload prefix, so they never appear in a checked
// history; they count in the replicas' state hashes like any write.

// CheckerRecovery: after each fault's heal, and after the final heal,
// every group served again within the recovery bound.
const CheckerRecovery = "recovery"

// Prober is what the recovery probe needs of a connection. *client.Client
// is one.
type Prober interface {
	Put(ctx context.Context, req *metapb.PutRequest) (*metapb.PutResponse, error)
	CommitOffsets(ctx context.Context, req *metapb.CommitOffsetsRequest) (*metapb.CommitOffsetsResponse, error)
	Members(ctx context.Context) (*metapb.MembersResponse, error)
}

// Recovery is how long the cluster took to serve again after a heal.
type Recovery struct {
	// Took is the time from the end of the heal until every group had
	// served (the slowest group's first success); when some group never
	// did, the time the probe gave up.
	Took time.Duration `json:"took_ns"`
	// Slowest is the group that served last.
	Slowest string `json:"slowest,omitempty"`
	// Missing maps each group that did not serve within the bound to its
	// last error.
	Missing map[string]string `json:"missing,omitempty"`
}

// Recovered reports whether every group served again.
func (r *Recovery) Recovered() bool { return r != nil && len(r.Missing) == 0 }

// AwaitRecovery probes every group of groups in parallel, each until it
// takes a write (attempts bounded by opTimeout, 100 ms apart) or ctx
// ends, and returns how long the slowest took.
func AwaitRecovery(ctx context.Context, p Prober, groups []string, opTimeout time.Duration) Recovery {
	began := time.Now()
	k, d := groupCounts(groups)
	var (
		mu  sync.Mutex
		r   = Recovery{Missing: map[string]string{}}
		wg  sync.WaitGroup
		seq = began.UnixNano()
	)
	for _, g := range groups {
		wg.Go(func() {
			for attempt := 0; ; attempt++ {
				actx, cancel := context.WithTimeout(ctx, opTimeout)
				err := probeWrite(actx, p, g, k, d, fmt.Sprintf("%d/%d", seq, attempt))
				cancel()
				if err == nil {
					took := time.Since(began)
					mu.Lock()
					if took > r.Took {
						r.Took, r.Slowest = took, g
					}
					mu.Unlock()
					return
				}
				if !Sleep(ctx, 100*time.Millisecond) {
					mu.Lock()
					r.Missing[g] = err.Error()
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if len(r.Missing) > 0 {
		r.Took = time.Since(began)
	} else {
		r.Missing = nil
	}
	return r
}

// probeWrite makes one write to group g of a cluster with k offset and d
// data groups (metadata-0: a linearizable Members read).
func probeWrite(ctx context.Context, p Prober, g string, k, d int, value string) error {
	switch {
	case g == metapb.MetadataGroup:
		_, err := p.Members(ctx)
		return err
	case strings.HasPrefix(g, "data-"):
		key := probeName("verify-probe/", func(s string) bool { return metapb.DataGroupFor([]byte(s), d) == g })
		_, err := p.Put(ctx, &metapb.PutRequest{Key: []byte(key), Value: []byte(value)})
		return err
	case strings.HasPrefix(g, "offset-"):
		cg := probeName("verify-probe-", func(s string) bool { return metapb.OffsetGroupFor(s, k) == g })
		_, err := p.CommitOffsets(ctx, &metapb.CommitOffsetsRequest{Offsets: []*metapb.OffsetCommit{{
			Group: cg, Topic: "probe", Partition: 0, Offset: time.Now().UnixNano(), Metadata: value,
		}}})
		return err
	}
	return fmt.Errorf("verify: probe: unknown group %q", g)
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

// RecoveryStats summarises the recovery times of one fault kind over a
// run (nearest-rank percentiles over the heals that recovered).
type RecoveryStats struct {
	Heals int           `json:"heals"`
	P50   time.Duration `json:"p50_ns"`
	P99   time.Duration `json:"p99_ns"`
	Max   time.Duration `json:"max_ns"`
	// Unrecovered counts heals after which some group never served
	// within the bound (not in the percentiles).
	Unrecovered int `json:"unrecovered,omitempty"`
}

// String renders s for reports: "3 heals: p50 1.2s p99 2.1s max 2.1s".
func (s RecoveryStats) String() string {
	out := fmt.Sprintf("%d heals: p50 %s p99 %s max %s", s.Heals, s.P50.Round(time.Millisecond),
		s.P99.Round(time.Millisecond), s.Max.Round(time.Millisecond))
	if s.Unrecovered > 0 {
		out += fmt.Sprintf(", %d not recovered", s.Unrecovered)
	}
	return out
}

// FinalHeal is the key of the final heal (HealAll) in RecoveryByKind.
const FinalHeal FaultKind = "final-heal"

// RecoveryByKind summarises the recovery times of faults per kind, and of
// the final heal under FinalHeal.
func RecoveryByKind(faults []Fault, final *Recovery) map[FaultKind]RecoveryStats {
	times := map[FaultKind][]time.Duration{}
	out := map[FaultKind]RecoveryStats{}
	add := func(k FaultKind, r *Recovery) {
		s := out[k]
		s.Heals++
		if r.Recovered() {
			times[k] = append(times[k], r.Took)
		} else {
			s.Unrecovered++
		}
		out[k] = s
	}
	for i := range faults {
		if r := faults[i].Recovery; r != nil {
			add(faults[i].Kind, r)
		}
	}
	if final != nil {
		add(FinalHeal, final)
	}
	for k, ts := range times {
		slices.Sort(ts)
		s := out[k]
		s.P50, s.P99, s.Max = Percentile(ts, 50), Percentile(ts, 99), ts[len(ts)-1]
		out[k] = s
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Percentile is the nearest-rank p-th percentile of sorted ts (0 if
// empty).
func Percentile(ts []time.Duration, p int) time.Duration {
	if len(ts) == 0 {
		return 0
	}
	i := (p*len(ts)+99)/100 - 1
	return ts[min(max(i, 0), len(ts)-1)]
}

// CheckRecovery judges the recovery windows: after each fault's heal and
// after the final heal, every group served again within bound. A fault
// that was never injected (its target not resolved) has no heal to judge.
// A run with faults but no recovery recorded is unknown.
func CheckRecovery(faults []Fault, final *Recovery, bound time.Duration) CheckResult {
	res := CheckResult{Checker: CheckerRecovery, Verdict: Valid}
	var (
		worst   time.Duration
		slowest string
		judged  int
	)
	judge := func(name string, r *Recovery) {
		judged++
		if !r.Recovered() {
			res.Verdict = Invalid
			var groups []string
			for _, g := range slices.Sorted(maps.Keys(r.Missing)) {
				groups = append(groups, fmt.Sprintf("%s (%s)", g, r.Missing[g]))
			}
			res.Failing = append(res.Failing, fmt.Sprintf("%s: the cluster did not serve again within %s of the heal: %s",
				name, bound, strings.Join(groups, ", ")))
			return
		}
		if r.Took > worst {
			worst, slowest = r.Took, fmt.Sprintf("%s after %s", r.Slowest, name)
		}
	}
	healed := 0
	for i := range faults {
		f := &faults[i]
		if f.Began == 0 && f.Ended == 0 || strings.HasPrefix(f.Err, "resolve: ") {
			continue
		}
		healed++
		if f.Recovery != nil {
			judge(fmt.Sprintf("fault %d (%s)", f.ID, f.Kind), f.Recovery)
		} else {
			res.Undecided = append(res.Undecided, fmt.Sprintf("fault %d (%s): not probed", f.ID, f.Kind))
		}
	}
	if final != nil {
		judge("the final heal", final)
	}
	res.Ops, res.Partitions = judged, judged+len(res.Undecided)
	if judged == 0 {
		if healed > 0 {
			res.Verdict = Unknown
			res.Details = fmt.Sprintf("%d faults healed, no recovery recorded", healed)
		} else {
			res.Details = "no heal to probe"
		}
		return res
	}
	res.Details = fmt.Sprintf("%d heals probed; slowest to serve again: %s (%s); limit %s",
		judged, worst.Round(time.Millisecond), slowest, bound)
	return res
}
