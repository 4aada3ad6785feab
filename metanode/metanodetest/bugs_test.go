//go:build metabugs

package metanodetest_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/verify"
)

// correctness are the checkers whose failure means the system broke a
// promise; activity and nemesis failures mean a run that tested too
// little, which is not catching a bug.
var correctness = []string{
	verify.CheckerKV, verify.CheckerOffsets, verify.CheckerOffsetsGroup,
	verify.CheckerFinal, verify.CheckerConvergence, verify.CheckerPlacement,
	verify.CheckerOwnership, verify.CheckerRanges,
}

// TestPlantedBugs is the runner's self-test: with each planted bug
// switched on (build tag metabugs, META_BUG), seeded runs with fault
// kinds that can expose it must fail a correctness checker within 20
// seeds. It reports how many seeds each bug took and fails if one is not
// caught. Run it with
//
//	go test -tags metabugs -run TestPlantedBugs ./metanode/metanodetest/
//
// The kinds per bug:
//   - localreads (a node serves linearizable reads from its own replica
//     without confirming leadership): isolate and split keep clients on a
//     deposed leader or a cut-off follower that still answers reads.
//   - retryunknown (the client retries a write whose outcome is unknown
//     and reports a failed retry as a definite failure): kill, isolate and
//     delay with loss make outcomes unknown while the first attempt may
//     have been applied.
//   - nosync (raft log writes bypass RocksDB's write-ahead log, so a crash
//     loses acknowledged entries): kill-all crashes every node soon after
//     writes, before any memtable flush.
//   - dupreplica (placement may choose a node that already holds a
//     replica of the group for a new one; metadata-0's state machine
//     refuses such a record, so the change never lands): member faults
//     take a node out, and its replicas are never re-created elsewhere or
//     dropped; the placement check finds groups still placed on a node
//     that is no longer a member. Move faults drain a spare, where the
//     bug may strike too.
//   - nospacelate (the NOSPACE check runs after the write: a write
//     reported refused was applied): disk-full faults raise the alarm
//     under load, on a lane whose nodes have small data filesystems.
//   - txnnocompare (a Txn applies its success branch without evaluating
//     its compares, and reports success): the KV workload's txns compare
//     what their client last saw, which other clients overwrite; any
//     fault kind will do, kill is the one used.
//   - walreplay (RocksDB's default recovery: a damaged write-ahead log is
//     replayed up to the damage, the writes after it silently dropped,
//     and the node starts): corrupt faults that damage a stopped
//     follower's newest log. The damage a checker of the workload could
//     see stays on that node, which the heal replaces, so the catch is
//     the fault's own check (metanodetest.ErrBrokenPromise): the node
//     started on a log whose damage recovery must fail on (not a torn
//     tail, which a correct build drops too) and halted nothing.
//   - ownlevel (an operation is gated by the proposing node's own
//     feature level instead of the cluster version): upgrade faults on a
//     cluster started at the base level, whose members apply only what
//     that level knows; a node restarted at the newer level, which the
//     fault makes lead every group while an older member runs, proposes
//     its hash checks and multi-puts, and the older member halts on
//     them. Caught by the fault's own check (ErrBrokenPromise): a replica
//     halted during the rolling upgrade.
//
// A seed counts as a catch only when a correctness checker says invalid
// or a fault's own check fails (ErrBrokenPromise): unknown (a checker
// that ran out of time) is no catch.
//
// proposeowner (ownership checked only at propose time, c29b6cd) was
// tried and removed: the reshard fault caught it at seed 8 on a quiet
// machine, twice, and in none of 20 seeds beside stress-ng (ci25).
func TestPlantedBugs(t *testing.T) {
	bugs := []struct {
		bug   string
		kinds []verify.FaultKind
	}{
		{"localreads", []verify.FaultKind{verify.FaultIsolate, verify.FaultSplit}},
		{"retryunknown", []verify.FaultKind{verify.FaultKill, verify.FaultIsolate, verify.FaultDelay}},
		{"nosync", []verify.FaultKind{verify.FaultKillAll}},
		{"dupreplica", []verify.FaultKind{verify.FaultMove, verify.FaultMember}},
		{"nospacelate", []verify.FaultKind{verify.FaultDiskFull}},
		{"txnnocompare", []verify.FaultKind{verify.FaultKill}},
		{"walreplay", []verify.FaultKind{verify.FaultCorrupt}},
		{"ownlevel", []verify.FaultKind{verify.FaultUpgrade}},
	}
	// faultParams override these parameters of every scheduled fault of
	// a bug's runs (the file a corrupt fault damages).
	faultParams := map[string]map[string]string{"walreplay": {"file": "wal"}}
	took := map[string]int{}
	for _, b := range bugs {
		t.Run(b.bug, func(t *testing.T) {
			// Before the cluster starts: rocks reads it when it opens the
			// database, the others on every call.
			t.Setenv("META_BUG", b.bug)
			// An upgrade raises the cluster version for good: each seed
			// upgrades a cluster of its own, with the hash checks the
			// operations lane runs (an operation of the newer level).
			upgrade := slices.Contains(b.kinds, verify.FaultUpgrade)
			l := &lane{t: t, nodes: 3, noHashChecks: !upgrade}
			for _, k := range b.kinds {
				if slices.Contains(verify.OpsFaultKinds, k) {
					l.adjust = opsLaneOptions(t, k, l.nodes)
				}
			}
			defer l.stop()
			base := t.TempDir()
			for seed := int64(1); seed <= 20; seed++ {
				p := planFor(seed, b.kinds)
				if l.nem == nil || l.broken || l.full(p) || upgrade {
					l.start()
				}
				p.nodes = 3
				res := runBugSeed(t, l, p, base, faultParams[b.bug])
				var failing []string
				for _, c := range res.Checks {
					// Only invalid is a catch: unknown (a checker out of
					// time) proves nothing.
					if c.Verdict == verify.Invalid && slices.Contains(correctness, c.Checker) {
						failing = append(failing, fmt.Sprintf("%s %v", c.Checker, c.Failing))
					}
				}
				// A promise the fault itself checks (operations faults)
				// is a correctness failure too.
				for _, f := range res.Faults {
					if strings.Contains(f.Err, metanodetest.ErrBrokenPromise.Error()) {
						failing = append(failing, fmt.Sprintf("%s [fault %d (%s): %s]", verify.CheckerNemesis, f.ID, f.Kind, f.Err))
					}
				}
				if len(failing) > 0 {
					took[b.bug] = int(seed)
					t.Logf("%s caught at seed %d (%s), failing: %v; run folder kept at %s", b.bug, seed, p.kinds[0], failing, keep(t, res.Dir, seed))
					return
				}
				if res.Verdict != verify.Valid {
					// Not a catch, but the cluster may be in any state.
					l.broken = true
				}
			}
			t.Errorf("%s: got no correctness failure in 20 seeds, want the bug caught", b.bug)
		})
	}
	t.Logf("seeds needed per planted bug: %v", took)
}

// runBugSeed runs one seed and logs its verdicts; a run with any
// non-valid verdict marks the lane broken (the planted bug may have
// corrupted it).
func runBugSeed(t *testing.T, l *lane, p plan, base string, params map[string]string) *verify.Result {
	t.Helper()
	dir := fmt.Sprintf("%s/%s-seed-%d", base, p.kinds[0], p.seed)
	log := metanodetest.NewLogger(t)
	cfg := runConfig(l, p, dir, 10*time.Second+p.extra, log)
	if params != nil {
		if cfg.Faults == nil {
			cfg.Faults = verify.Schedule(cfg.Seed, cfg.Kinds, cfg.Duration, cfg.Schedule)
		}
		for i := range cfg.Faults {
			f := &cfg.Faults[i]
			f.Params = maps.Clone(f.Params)
			if f.Params == nil {
				f.Params = map[string]string{}
			}
			maps.Copy(f.Params, params)
		}
	}
	// A planted bug may leave the cluster unable to recover (nosync can
	// lose the log entry holding a group's configuration): do not wait
	// the default minutes for what will not come.
	cfg.NemesisTimeout = 20 * time.Second
	cfg.FinalTimeout = 15 * time.Second
	cfg.ConvergeTimeout = 15 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := verify.Run(ctx, cfg)
	if res == nil {
		t.Fatalf("seed %d: run not carried out: %v", p.seed, err)
	}
	var verdicts []string
	for _, c := range res.Checks {
		verdicts = append(verdicts, c.Checker+"="+string(c.Verdict))
	}
	t.Logf("seed %d %v: verdict %s; ops %d ok %d fail %d unknown %d; %v",
		p.seed, p.kinds, res.Verdict, res.Ops.Total, res.Ops.OK, res.Ops.Fail, res.Ops.Unknown, verdicts)
	if res.Verdict != verify.Valid {
		l.broken = true
	}
	return res
}
