package metanodetest_test

import (
	"context"
	"os"
	"testing"
	"time"
	"strconv"

	"github.com/metamq/meta/controller"
	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify"
)

func TestZZBrokerThrowaway(t *testing.T) {
	if os.Getenv("ZZ_RUN") == "" {
		t.Skip("throwaway: set ZZ_RUN=1")
	}
	seed := int64(1)
	if v := os.Getenv("ZZ_SEED"); v != "" { seed, _ = strconv.ParseInt(v, 10, 64) }
	kinds, _ := verify.ParseKinds(os.Getenv("ZZ_KINDS"))
	dur := 20 * time.Second
	if v := os.Getenv("ZZ_DUR"); v != "" { dur, _ = time.ParseDuration(v) }
	c := metanodetest.Start(t, metanodetest.Options{Nodes: 3, OffsetGroups: 2, DataGroups: 2, Seed: uint64(seed),
		Configure: func(cfg *metanode.Config) {
			cfg.SnapshotThreshold = 128
			cfg.TrailingLogs = 64
			cfg.SnapshotInterval = 500 * time.Millisecond
			cfg.ReconcileInterval = 300 * time.Millisecond
		},
		Controller: func(cfg *controller.Config) {
			if os.Getenv("ZZ_CTL") == "default" { return }
			cfg.HeartbeatInterval = 500 * time.Millisecond
			cfg.HeartbeatTimeout = 2 * time.Second
		}})
	nem, err := metanodetest.NewNemesis(c, metanodetest.NemesisOptions{})
	if err != nil { t.Fatal(err) }
	defer nem.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := nem.WaitHealthy(ctx); err != nil { t.Fatal(err) }
	log := metanodetest.NewLogger(t)
	reps := 1
	if os.Getenv("ZZ_REPEAT") != "" { reps, _ = strconv.Atoi(os.Getenv("ZZ_REPEAT")) }
	for rep := 0; rep < reps; rep++ {
	seed := seed + int64(rep)
	cfg := verify.DefaultRunConfig()
	cfg.Seed = seed
	cfg.Dir = "/tmp/throwaway/seed-" + strconv.FormatInt(seed, 10)
	os.RemoveAll(cfg.Dir)
	cfg.Endpoints = nem.Endpoints()
	cfg.Dial = nem.Dialer(log, cfg.OpTimeout)
	cfg.Nemesis = nem
	cfg.Kinds = kinds
	cfg.Duration = dur
	cfg.Workload = verify.BrokerWorkloadConfig()
	cfg.Workload.AssignSlack = 3 * time.Second
	if v := os.Getenv("ZZ_WATCHERS"); v != "" { cfg.Workload.KVWatchers, _ = strconv.Atoi(v) }
	cfg.Schedule = verify.ScheduleOptions{Groups: metapb.Groups(2, 2), MemberOps: []string{"remove-readd", "wipe-readd", "add"}}
	if os.Getenv("ZZ_META") != "" { cfg.Schedule.Groups = []string{metapb.MetadataGroup} }
	if os.Getenv("ZZ_RUNNER") != "" {
		d := cfg.Duration
		cfg.Schedule = verify.ScheduleOptions{Groups: metapb.Groups(2, 2), Warmup: 1500 * time.Millisecond,
			Cooldown: d - 1500*time.Millisecond - 3*time.Second, MinFault: 2 * time.Second, MaxFault: 3 * time.Second,
			MemberOps: []string{"remove-readd", "wipe-readd", "add"}, MaxFaults: 1}
		cfg.Workload.AssignSlack = 2 * time.Second
	}
	cfg.ConvergeTimeout = 30 * time.Second
	cfg.MinOps = 5
	cfg.Logger = log
	start := time.Now()
	res, err := verify.Run(ctx, cfg)
	if res == nil { t.Fatal(err) }
	for _, ch := range res.Checks {
		t.Logf("%s: %s ops %d failing %v: %.1500s", ch.Checker, ch.Verdict, ch.Ops, ch.Failing, ch.Details)
	}
	t.Logf("verdict %s in %s; ops %d; dir %s", res.Verdict, time.Since(start).Round(time.Second), res.Ops.Total, cfg.Dir)
	for i := range res.Faults { t.Logf("fault %s began %s ended %s err %s", res.Faults[i].String(), res.Faults[i].Began, res.Faults[i].Ended, res.Faults[i].Err) }
	if err := nem.WaitHealthy(ctx); err != nil { t.Fatal(err) }
	}
}
