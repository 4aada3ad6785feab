package verify

import (
	"context"
	"errors"
	"fmt"
	"maps"
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

// ChoosePairs pairs keys that route to the same one of m data groups
// (any two keys when m is 0 or 1): in key order within each group, each
// key in at most one pair, so that the KV checker's components (keys a
// batch ties together) stay two keys each.
func ChoosePairs(keys []string, m int) [][2]string {
	byGroup := map[string][]string{}
	for _, k := range keys {
		g := ""
		if m > 1 {
			g = metapb.DataGroupFor([]byte(k), m)
		}
		byGroup[g] = append(byGroup[g], k)
	}
	var out [][2]string
	for _, g := range slices.Sorted(maps.Keys(byGroup)) {
		ks := byGroup[g]
		for i := 0; i+1 < len(ks); i += 2 {
			out = append(out, [2]string{ks[i], ks[i+1]})
		}
	}
	return out
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
	// pairs are the KV batch calls' keys: pairs of keys that route to one
	// data group, so that each batch is one atomic part (ChoosePairs).
	pairs [][2]string
}

// NewWorkload prepares the key set and consumer groups for a cluster with
// the given group counts (0 when unknown).
func NewWorkload(seed int64, cfg WorkloadConfig, dataGroups, offsetGroups int) *Workload {
	w := &Workload{cfg: cfg, seed: seed, next: map[TopicPartition]*atomic.Int64{}}
	w.keys = ChooseKeys(cfg.Prefix, cfg.Keys, dataGroups)
	w.groups = ChooseConsumerGroups(cfg.Prefix, cfg.ConsumerGroups, offsetGroups)
	w.sessions = ChooseSessionIDs(cfg.Prefix, cfg.Sessions, dataGroups)
	w.pairs = ChoosePairs(w.keys, dataGroups)
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
// of them succeed. When s's target has the batch calls (BatchAPI) and
// there are pairs, 15% of the ops are batch calls over one pair instead
// (runBatch).
func (w *Workload) RunKV(ctx context.Context, s *Session, worker int) {
	rng := w.rng("kv", worker)
	seen := map[string]kvState{}
	listPrefix := w.cfg.Prefix + "/kv/"
	_, batch := s.t.(BatchAPI)
	batch = batch && len(w.pairs) > 0
	for ctx.Err() == nil {
		key := w.keys[rng.IntN(len(w.keys))]
		if n := rng.IntN(100); batch && n < 15 {
			w.runBatch(ctx, s, rng, seen, n)
			if w.cfg.Interval > 0 && !Sleep(ctx, w.cfg.Interval) {
				return
			}
			continue
		}
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

// runBatch issues one batch call over a pair (n < 15 picks which): a
// multi-get of both keys, a multi-put of both, or a txn that compares
// both with what this client last saw and puts both (or puts one and
// deletes the other) when they hold. A txn needs both keys known, else a
// multi-get learns them first. Txns have no failure branch, so an
// unknown one whose writes nobody saw can be pruned (prune).
func (w *Workload) runBatch(ctx context.Context, s *Session, rng *rand.Rand, seen map[string]kvState, n int) {
	pair := w.pairs[rng.IntN(len(w.pairs))]
	keys := []string{pair[0], pair[1]}
	if rng.IntN(2) == 0 {
		keys[0], keys[1] = keys[1], keys[0]
	}
	_, known0 := seen[keys[0]]
	_, known1 := seen[keys[1]]
	switch {
	case n < 5 || (n >= 10 && !(known0 && known1)):
		op := s.MultiGet(ctx, keys)
		if op.Outcome == OutcomeOK && len(op.Output.KVs) == len(keys) {
			for i, kv := range op.Output.KVs {
				if kv.Version == 0 {
					seen[keys[i]] = kvState{}
				} else {
					seen[keys[i]] = kvState{Exists: true, Value: kv.Value}
				}
			}
		}
	case n < 10:
		puts := []KV{{Key: keys[0], Value: s.NextValue()}, {Key: keys[1], Value: s.NextValue()}}
		op := s.MultiPut(ctx, puts)
		if op.Outcome != OutcomeOK {
			for _, p := range puts {
				w.learn(seen, p.Key, op, kvState{})
			}
			return
		}
		for _, part := range op.Output.Parts {
			for _, i := range part.Indexes {
				w.learn(seen, puts[i].Key, Op{Outcome: part.Outcome}, kvState{Exists: true, Value: puts[i].Value})
			}
		}
	default:
		t := TxnInput{}
		for _, k := range keys {
			st := seen[k]
			t.Compares = append(t.Compares, TxnCompare{Key: k, Value: st.Value, Absent: !st.Exists})
		}
		after := []kvState{{Exists: true, Value: s.NextValue()}, {Exists: true, Value: s.NextValue()}}
		if rng.IntN(5) == 0 {
			after[1] = kvState{}
		}
		for i, k := range keys {
			t.Success = append(t.Success, TxnWrite{Key: k, Value: after[i].Value, Delete: !after[i].Exists})
		}
		op := s.Txn(ctx, t)
		for i, k := range keys {
			if op.Outcome == OutcomeOK && !op.Output.Succeeded {
				delete(seen, k) // a compare failed: the key holds something else
				continue
			}
			w.learn(seen, k, op, after[i])
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
