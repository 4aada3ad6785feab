package verify

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/metamq/meta/rpc/metapb"
)

// Defaults of the broker workloads (WithBroker).
const (
	defaultSessionClientsPerNode = 1
	defaultSessions              = 16
	defaultSessionBatch          = 4
	defaultKVWatchers            = 2
	defaultBrokers               = 3
	defaultConnectors            = 6
	defaultAssignSlack           = 5 * time.Second
	// sessionExpiry is the expiry interval of every session the workload
	// writes: far longer than any run, so that no session expires while it
	// is checked (the model has no expiry).
	sessionExpiry = 3600
)

// BrokerWorkloadConfig returns DefaultWorkloadConfig with every broker
// workload turned on: sessions, watches and the controller workload. It
// is the "broker" workload set.
func BrokerWorkloadConfig() WorkloadConfig { return DefaultWorkloadConfig().WithBroker() }

// WithBroker returns c with every broker workload turned on, each at its
// default size unless c already sets it.
func (c WorkloadConfig) WithBroker() WorkloadConfig {
	set := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	set(&c.SessionClientsPerNode, defaultSessionClientsPerNode)
	set(&c.Sessions, defaultSessions)
	set(&c.SessionBatch, defaultSessionBatch)
	set(&c.KVWatchers, defaultKVWatchers)
	set(&c.Brokers, defaultBrokers)
	set(&c.Connectors, defaultConnectors)
	c.ResourceWatch = true
	if c.AssignSlack == 0 {
		c.AssignSlack = defaultAssignSlack
	}
	return c
}

// WorkloadSet returns the workload set of a name: "default" (KV and
// offsets) or "broker" (those and every broker workload).
func WorkloadSet(name string) (WorkloadConfig, error) {
	switch name {
	case "", "default":
		return DefaultWorkloadConfig(), nil
	case "broker":
		return BrokerWorkloadConfig(), nil
	}
	return WorkloadConfig{}, fmt.Errorf("verify: unknown workload set %q (default, broker)", name)
}

// broker reports whether any broker workload is on.
func (c WorkloadConfig) broker() bool {
	return c.SessionClientsPerNode > 0 || c.KVWatchers > 0 || c.ResourceWatch || c.Brokers > 0
}

func (c WorkloadConfig) validateBroker() error {
	var errs []error
	if c.SessionClientsPerNode < 0 || c.KVWatchers < 0 || c.Brokers < 0 || c.Connectors < 0 || c.AssignSlack < 0 {
		errs = append(errs, errors.New("verify: workload: negative broker workload setting"))
	}
	if c.SessionClientsPerNode > 0 && (c.Sessions <= 0 || c.SessionBatch <= 0) {
		errs = append(errs, errors.New("verify: workload: session clients need Sessions and SessionBatch > 0"))
	}
	if c.SessionBatch > metapb.MaxBatchEntries {
		errs = append(errs, fmt.Errorf("verify: workload: SessionBatch above %d", metapb.MaxBatchEntries))
	}
	if c.KVWatchers > 0 && c.KVClientsPerNode == 0 {
		errs = append(errs, errors.New("verify: workload: KV watchers need the KV workload"))
	}
	if c.Brokers > 0 && c.Connectors <= 0 {
		errs = append(errs, errors.New("verify: workload: brokers need Connectors > 0"))
	}
	return errors.Join(errs...)
}

// ChooseSessionIDs returns n client ids "<prefix>-s<NNN>", sorted, chosen
// so that each of the m data groups holds some when n >= m.
func ChooseSessionIDs(prefix string, n, m int) []string {
	return spread(n, m, func(i int) string { return fmt.Sprintf("%s-s%03d", prefix, i) },
		func(s string) string { return metapb.DataGroupFor([]byte(s), m) })
}

// Sessions returns the sessions workload's client ids.
func (w *Workload) Sessions() []string { return slices.Clone(w.sessions) }

func (w *Workload) brokerRng(kind uint64, worker int) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(w.seed), kind<<32|uint64(worker)))
}

// Salts of the broker workloads' random streams.
const (
	saltSessions   = 0x5e55
	saltController = 0xc0de
)

// RunSessions issues session ops through s until ctx ends: about a third
// put batches of 1..SessionBatch sessions (spread over the data groups,
// each with a unique state, a broker id and connected true or false), a
// tenth delete batches of 1..3, a third gets and the rest list pages,
// all linearizable.
func (w *Workload) RunSessions(ctx context.Context, s *BrokerSession, worker int) {
	rng := w.brokerRng(saltSessions, worker)
	ids := w.sessions
	for ctx.Err() == nil {
		switch n := rng.IntN(100); {
		case n < 35:
			k := 1 + rng.IntN(min(w.cfg.SessionBatch, len(ids)))
			var batch []SessionValue
			for _, i := range rng.Perm(len(ids))[:k] {
				batch = append(batch, SessionValue{ClientID: ids[i], BrokerID: fmt.Sprintf("b%d", rng.IntN(3)),
					Connected: rng.IntN(2) == 0, Expiry: sessionExpiry, State: s.NextValue()})
			}
			s.PutSessions(ctx, batch)
		case n < 45:
			k := 1 + rng.IntN(min(3, len(ids)))
			var del []string
			for _, i := range rng.Perm(len(ids))[:k] {
				del = append(del, ids[i])
			}
			s.DeleteSessions(ctx, del)
		case n < 80:
			s.GetSession(ctx, ids[rng.IntN(len(ids))])
		default:
			after := w.cfg.Prefix + "-s"
			if rng.IntN(2) == 0 {
				after = ids[rng.IntN(len(ids))]
			}
			s.ListSessions(ctx, after, []uint32{0, 3, 5}[rng.IntN(3)])
		}
		if w.cfg.Interval > 0 && !Sleep(ctx, w.cfg.Interval) {
			return
		}
	}
}

// FinalSessionReads reads every session the broker history's non-final
// ops named, linearizably through s (marked final), retrying each until it
// succeeds or ctx ends; it returns the ids it could not read.
func FinalSessionReads(ctx context.Context, s *BrokerSession, ops []BrokerOp, retry time.Duration) (missed []string) {
	s.SetFinal(true)
	defer s.SetFinal(false)
	for _, id := range sessionUniverse(ops, false) {
		for s.GetSession(ctx, id).Outcome != OutcomeOK {
			if !Sleep(ctx, retry) {
				missed = append(missed, id)
				break
			}
		}
	}
	return missed
}
