package verify

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/metamq/meta/rpc/metapb"
)

// WorkloadConfig shapes the workloads of a run. Each client is a Session
// pinned to one node (the node forwards what it cannot serve, as it would
// for a broker); clients are spread over the nodes round-robin.
type WorkloadConfig struct {
	// Prefix namespaces the run's keys and consumer groups so that runs on
	// one cluster never see each other's data. Default "v<seed>-<unix ms>".
	Prefix string
	// KVClientsPerNode clients run the KV workload (0: no KV workload).
	KVClientsPerNode int
	// Keys is the size of the shared KV key set: small, so that clients
	// collide on keys. Keys are chosen so that every data group holds some.
	Keys int
	// OffsetClientsPerNode clients run the offsets workload (0: none).
	OffsetClientsPerNode int
	// ConsumerGroups × Topics × Partitions offsets partitions; consumer
	// groups are chosen so that every offset group holds some.
	ConsumerGroups, Topics, Partitions int
	// Interval is the pause between two ops of one client (0: none).
	Interval time.Duration

	// The broker workloads (broker_workload.go) are off by default;
	// BrokerWorkloadConfig and WithBroker turn them all on. They need
	// connections that implement BrokerAPI.

	// SessionClientsPerNode clients run the sessions workload (0: none)
	// over Sessions client ids, chosen so that every data group holds
	// some, writing batches of up to SessionBatch sessions.
	SessionClientsPerNode, Sessions, SessionBatch int
	// KVWatchers watch the KV workload's keys (one prefix watch over every
	// data group each) for the whole run; ResourceWatch adds a watch of
	// the run's metadata resources. Both are checked by the watch checker.
	KVWatchers    int
	ResourceWatch bool
	// Brokers simulated brokers (0: no controller workload) register,
	// heartbeat, fall silent for a while and come back, and run the
	// Connectors connectors the controller assigns them.
	Brokers, Connectors int
	// AssignSlack: once the cluster has healed and every broker is back,
	// every connector that should run must be assigned within the session
	// timeout plus AssignSlack, and stay assigned. Default 5s.
	AssignSlack time.Duration
}

// DefaultWorkloadConfig returns a workload that suits a 3-node cluster on a
// small machine.
func DefaultWorkloadConfig() WorkloadConfig {
	return WorkloadConfig{
		KVClientsPerNode:     2,
		Keys:                 12,
		OffsetClientsPerNode: 1,
		ConsumerGroups:       3,
		Topics:               2,
		Partitions:           3,
		Interval:             5 * time.Millisecond,
	}
}

// Validate reports every problem at once.
func (c WorkloadConfig) Validate() error {
	var errs []error
	if c.KVClientsPerNode < 0 || c.OffsetClientsPerNode < 0 {
		errs = append(errs, errors.New("verify: workload: negative clients per node"))
	}
	if c.KVClientsPerNode > 0 && c.Keys <= 0 {
		errs = append(errs, errors.New("verify: workload: KV clients need Keys > 0"))
	}
	if c.OffsetClientsPerNode > 0 && (c.ConsumerGroups <= 0 || c.Topics <= 0 || c.Partitions <= 0) {
		errs = append(errs, errors.New("verify: workload: offsets clients need ConsumerGroups, Topics and Partitions > 0"))
	}
	if c.KVClientsPerNode == 0 && c.OffsetClientsPerNode == 0 && c.SessionClientsPerNode == 0 && c.Brokers == 0 {
		errs = append(errs, errors.New("verify: workload: no clients"))
	}
	if err := c.validateBroker(); err != nil {
		errs = append(errs, err)
	}
	if c.Interval < 0 {
		errs = append(errs, errors.New("verify: workload: negative Interval"))
	}
	return errors.Join(errs...)
}

// ChooseKeys returns n keys under prefix+"/kv/", sorted, chosen so that
// each of the m data groups (metapb.DataGroupFor) holds at least n/m of
// them when m > 0.
func ChooseKeys(prefix string, n, m int) []string {
	return spread(n, m, func(i int) string { return fmt.Sprintf("%s/kv/%03d", prefix, i) },
		func(s string) string { return metapb.DataGroupFor([]byte(s), m) })
}

// ChooseConsumerGroups returns n consumer group names, sorted, chosen so
// that each of the k offset groups holds at least one when n >= k.
func ChooseConsumerGroups(prefix string, n, k int) []string {
	return spread(n, k, func(i int) string { return fmt.Sprintf("%s-cg%02d", prefix, i) },
		func(s string) string { return metapb.OffsetGroupFor(s, k) })
}

// spread picks n names, taking them round-robin from the buckets the
// routing function puts candidates in, so that every bucket is used.
func spread(n, buckets int, name func(int) string, bucket func(string) string) []string {
	if buckets <= 1 {
		out := make([]string, n)
		for i := range out {
			out[i] = name(i)
		}
		return out
	}
	byBucket := map[string][]string{}
	var order []string
	need := (n + buckets - 1) / buckets
	full := func() bool {
		if len(order) < buckets {
			return false
		}
		for _, b := range order {
			if len(byBucket[b]) < need {
				return false
			}
		}
		return true
	}
	for i := 0; i < 64*(n+buckets) && !full(); i++ {
		s := name(i)
		b := bucket(s)
		if _, ok := byBucket[b]; !ok {
			order = append(order, b)
		}
		byBucket[b] = append(byBucket[b], s)
	}
	slices.Sort(order)
	var out []string
	for round := 0; len(out) < n; round++ {
		progress := false
		for _, b := range order {
			if round < len(byBucket[b]) && len(out) < n {
				out = append(out, byBucket[b][round])
				progress = true
			}
		}
		if !progress {
			break
		}
	}
	slices.Sort(out)
	return out
}

// Workload generates a run's operations. Its choices are seeded: worker w
// of a workload with seed s makes the same choices on every run, though
// what the cluster answers (and so the history) differs.
type Workload struct {
	cfg    WorkloadConfig
	seed   int64
	keys   []string
	groups []string
	topics []string
	// next hands out offsets: unique and increasing per partition across
	// all clients, so a fetched offset names the commit that wrote it.
	next map[TopicPartition]*atomic.Int64
	// sessions are the sessions workload's client ids.
	sessions []string
}

// NewWorkload prepares the key set and consumer groups for a cluster with
// the given group counts (0 when unknown).
func NewWorkload(seed int64, cfg WorkloadConfig, dataGroups, offsetGroups int) *Workload {
	w := &Workload{cfg: cfg, seed: seed, next: map[TopicPartition]*atomic.Int64{}}
	w.keys = ChooseKeys(cfg.Prefix, cfg.Keys, dataGroups)
	w.groups = ChooseConsumerGroups(cfg.Prefix, cfg.ConsumerGroups, offsetGroups)
	w.sessions = ChooseSessionIDs(cfg.Prefix, cfg.Sessions, dataGroups)
	for t := 0; t < cfg.Topics; t++ {
		w.topics = append(w.topics, fmt.Sprintf("t%d", t))
	}
	for _, g := range w.groups {
		for _, tp := range w.partitionsOf(g) {
			w.next[tp] = new(atomic.Int64)
		}
	}
	return w
}

// Keys returns the KV key set.
func (w *Workload) Keys() []string { return slices.Clone(w.keys) }

// ConsumerGroups returns the consumer groups.
func (w *Workload) ConsumerGroups() []string { return slices.Clone(w.groups) }

func (w *Workload) partitionsOf(group string) []TopicPartition {
	var out []TopicPartition
	for _, t := range w.topics {
		for p := 0; p < w.cfg.Partitions; p++ {
			out = append(out, TopicPartition{Group: group, Topic: t, Partition: int32(p)})
		}
	}
	return out
}

func (w *Workload) rng(kind string, worker int) *rand.Rand {
	salt := uint64(worker) << 1
	if kind == "offsets" {
		salt |= 1
	}
	return rand.New(rand.NewPCG(uint64(w.seed), salt))
}

// RunKV issues KV ops through s until ctx ends: about a quarter gets, a
// quarter puts, a fifth compare-and-swaps, a tenth deletes and the rest
// list pages, all linearizable, every written value unique. A
// compare-and-swap expects what this client last saw of the key, so many
// of them succeed.
func (w *Workload) RunKV(ctx context.Context, s *Session, worker int) {
	rng := w.rng("kv", worker)
	seen := map[string]kvState{}
	listPrefix := w.cfg.Prefix + "/kv/"
	for ctx.Err() == nil {
		key := w.keys[rng.IntN(len(w.keys))]
		switch n := rng.IntN(100); {
		case n < 25:
			op := s.Get(ctx, key, false)
			if op.Outcome == OutcomeOK {
				seen[key] = stateOf(op.Output.KV)
			}
		case n < 50:
			v := s.NextValue()
			op := s.Put(ctx, key, v)
			w.learn(seen, key, op, kvState{Exists: true, Value: v})
		case n < 70:
			v := s.NextValue()
			st, known := seen[key]
			op := s.CAS(ctx, key, !known || !st.Exists, st.Value, v)
			switch {
			case op.Outcome == OutcomeOK && op.Output.Succeeded:
				seen[key] = kvState{Exists: true, Value: v}
			case op.Outcome == OutcomeOK:
				seen[key] = stateOf(op.Output.KV)
			default:
				delete(seen, key)
			}
		case n < 80:
			op := s.Delete(ctx, key)
			w.learn(seen, key, op, kvState{})
		default:
			after := ""
			if rng.IntN(2) == 0 {
				after = w.keys[rng.IntN(len(w.keys))]
			}
			limit := []uint32{0, 2, 5}[rng.IntN(3)]
			s.List(ctx, listPrefix, after, limit, false)
		}
		if w.cfg.Interval > 0 && !Sleep(ctx, w.cfg.Interval) {
			return
		}
	}
}

func stateOf(kv *KV) kvState {
	if kv == nil {
		return kvState{}
	}
	return kvState{Exists: true, Value: kv.Value}
}

// learn records what a write left behind: the new state if it succeeded,
// nothing known if its outcome is unknown.
func (w *Workload) learn(seen map[string]kvState, key string, op Op, after kvState) {
	switch op.Outcome {
	case OutcomeOK:
		seen[key] = after
	case OutcomeUnknown:
		delete(seen, key)
	}
}

// RunOffsets issues offsets ops through s until ctx ends: about half
// commits of 1–3 partitions of one consumer group, fetches of some
// partitions of one consumer group, and a rare (2%) delete-group. Every
// commit writes a new, higher offset for each partition and a unique
// metadata string.
func (w *Workload) RunOffsets(ctx context.Context, s *Session, worker int) {
	rng := w.rng("offsets", worker)
	for ctx.Err() == nil {
		g := w.groups[rng.IntN(len(w.groups))]
		all := w.partitionsOf(g)
		switch n := rng.IntN(100); {
		case n < 50:
			k := 1 + rng.IntN(min(3, len(all)))
			var batch []OffsetCommit
			for _, i := range rng.Perm(len(all))[:k] {
				tp := all[i]
				batch = append(batch, OffsetCommit{Group: tp.Group, Topic: tp.Topic, Partition: tp.Partition,
					Offset: w.next[tp].Add(1), Metadata: s.NextValue()})
			}
			s.Commit(ctx, batch)
		case n < 98:
			k := 1 + rng.IntN(len(all))
			idx := rng.Perm(len(all))[:k]
			slices.Sort(idx)
			tps := make([]TopicPartition, k)
			for j, i := range idx {
				tps[j] = all[i]
			}
			s.Fetch(ctx, tps, false)
		default:
			s.DeleteGroup(ctx, g)
		}
		if w.cfg.Interval > 0 && !Sleep(ctx, w.cfg.Interval) {
			return
		}
	}
}
