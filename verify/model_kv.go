package verify

import (
	"fmt"
	"hash/fnv"
	"iter"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/anishathalye/porcupine"
)

// The KV model is a register per key: absent, or holding one value. A
// history is checked per key (porcupine partitions), which is sound because
// every KV call touches one key, except list, which is decomposed below.
//
// Ops become model calls as follows.
//
//   - get: a read of its key (stale gets are skipped: they may lag by
//     contract).
//   - put: writes the value; with prev_kv the previous pair it returned is
//     an observation of the state just before the put.
//   - delete: makes the key absent; "deleted" (and prev_kv) observe whether
//     it existed.
//   - cas: swaps only when the state matches the expectation (absent, or
//     the expected value); whether it succeeded is an observation, and so
//     is the current pair it returned when it failed (and when it
//     succeeded, if it returned one).
//   - list: one page is decomposed into reads of single keys, all with the
//     list's call and return times. Each group answers its part of a list
//     with a linearizable read of its own, so each key's observation is
//     linearizable on its own even though the page is not one snapshot.
//     Returned keys are reads of their values. A key that the history
//     touches anywhere, has the prefix, is after start_after and was not
//     returned is a read of "absent" only if the page covered it: every key
//     up to the last returned key when more=true, every key when
//     more=false. Keys past the last returned key of a partial page are no
//     observation at all.
//
// An unknown write is possibly applied: its return time is set to the end
// of time, so porcupine may place it anywhere after its call, including
// after every other op (which is "never applied" for all observers). A
// failed write is dropped: it must never be observed, and since written
// values are unique a read of its value is a read of a value nobody wrote.
// Failed reads are dropped.

// kvCall is the porcupine input of the KV model.
type kvCall struct {
	Op           OpKind // OpGet (also list observations), OpPut, OpDelete, OpCAS
	Key          string
	Value        string // put value, cas new value
	Expected     string
	ExpectAbsent bool
	PrevKnown    bool // put/delete returned the previous pair
	ValueKnown   bool // a read that saw the value (false: keys-only list)
	FromList     bool
}

// kvResult is the porcupine output of the KV model.
type kvResult struct {
	Unknown   bool
	Found     bool   // get: found; put/delete: previous existed; cas: current existed
	Value     string // the value that goes with Found
	HasKV     bool   // cas returned a current pair (only then is Found meaningful for cas)
	Deleted   bool
	Succeeded bool
}

// kvState is one key's register.
type kvState struct {
	Exists bool
	Value  string
}

func (s kvState) stateHash() uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%t\x00%s", s.Exists, s.Value)
	return h.Sum64()
}

func (s kvState) String() string {
	if !s.Exists {
		return "∅"
	}
	return s.Value
}

func (s kvState) observed(found bool, value string, valueKnown bool) bool {
	if found != s.Exists {
		return false
	}
	return !found || !valueKnown || value == s.Value
}

func kvStep(s kvState, c kvCall, r kvResult) (bool, kvState) {
	switch c.Op {
	case OpGet:
		return s.observed(r.Found, r.Value, c.ValueKnown), s
	case OpPut:
		if !r.Unknown && c.PrevKnown && !s.observed(r.Found, r.Value, true) {
			return false, s
		}
		return true, kvState{Exists: true, Value: c.Value}
	case OpDelete:
		if !r.Unknown {
			if r.Deleted != s.Exists {
				return false, s
			}
			if c.PrevKnown && !s.observed(r.Found, r.Value, true) {
				return false, s
			}
		}
		return true, kvState{}
	case OpCAS:
		match := !s.Exists
		if !c.ExpectAbsent {
			match = s.Exists && s.Value == c.Expected
		}
		next := s
		if match {
			next = kvState{Exists: true, Value: c.Value}
		}
		if r.Unknown {
			return true, next
		}
		if r.Succeeded != match {
			return false, s
		}
		// A failed cas must say why (the current pair, or none when the
		// key is absent); a successful one may omit it.
		if (!r.Succeeded || r.HasKV) && !s.observed(r.HasKV && r.Found, r.Value, true) {
			return false, s
		}
		return true, next
	}
	return false, s
}

func describeKV(c kvCall, r kvResult) string {
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	var b strings.Builder
	switch c.Op {
	case OpGet:
		if c.FromList {
			b.WriteString("list⊃")
		} else {
			b.WriteString("get")
		}
		fmt.Fprintf(&b, "(%s) → ", q(c.Key))
		switch {
		case !r.Found:
			b.WriteString("∅")
		case !c.ValueKnown:
			b.WriteString("exists")
		default:
			b.WriteString(q(r.Value))
		}
		return b.String()
	case OpPut:
		fmt.Fprintf(&b, "put(%s, %s)", q(c.Key), q(c.Value))
		if !r.Unknown && c.PrevKnown {
			b.WriteString(" prev=")
			if r.Found {
				b.WriteString(q(r.Value))
			} else {
				b.WriteString("∅")
			}
		}
	case OpDelete:
		fmt.Fprintf(&b, "delete(%s)", q(c.Key))
		if !r.Unknown {
			fmt.Fprintf(&b, " → deleted=%t", r.Deleted)
		}
	case OpCAS:
		exp := "∅"
		if !c.ExpectAbsent {
			exp = q(c.Expected)
		}
		fmt.Fprintf(&b, "cas(%s, %s → %s)", q(c.Key), exp, q(c.Value))
		if !r.Unknown {
			fmt.Fprintf(&b, " → %t", r.Succeeded)
			if r.HasKV {
				fmt.Fprintf(&b, " cur=%s", q(r.Value))
			} else if !r.Succeeded {
				b.WriteString(" cur=∅")
			}
		}
	}
	if r.Unknown {
		b.WriteString(" ?unknown")
	}
	return b.String()
}

// infinity is the return time of an unknown write: it may take effect at
// any time after its call.
const infinity = math.MaxInt64

// kvPartitions turns the KV ops of a history into one porcupine partition
// per key, sorted by key. problems lists responses that break the API's
// shape (a list page out of order, say); each is a failure of the checker.
func kvPartitions(ops []Op) (parts []partition, problems []string) {
	// The universe of keys a list page can be said to have missed: every
	// key the history names or observed.
	universe := map[string]bool{}
	for i := range ops {
		op := &ops[i]
		switch op.Kind {
		case OpPut, OpGet, OpDelete, OpCAS:
			universe[op.Input.Key] = true
		case OpMultiPut:
			for _, p := range op.Input.Puts {
				universe[p.Key] = true
			}
		case OpMultiGet:
			for _, k := range op.Input.Keys {
				universe[k] = true
			}
		case OpTxn:
			if op.Input.Txn != nil {
				for _, k := range op.Input.Txn.keys() {
					universe[k] = true
				}
			}
		case OpList:
			if op.Output != nil {
				for _, kv := range op.Output.KVs {
					universe[kv.Key] = true
				}
			}
		}
	}
	keys := make([]string, 0, len(universe))
	for k := range universe {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	// Keys tied by txns and multi-put parts go to their component's
	// partition (model_multi.go), every other key to its own.
	comp := components(ops)
	byKey, addKey := partitioner(func(c kvCall) string { return c.Key }, kvResult{Unknown: true})
	byComp, addComp := partitioner(func(c multiCall) string {
		switch {
		case c.Single != nil:
			return comp[c.Single.Key]
		case c.Txn != nil:
			return comp[c.Txn.keys()[0]]
		}
		return comp[c.Writes[0].Key]
	}, multiResult{Unknown: true, Single: kvResult{Unknown: true}})
	add := func(op *Op, c kvCall, r kvResult) {
		if _, tied := comp[c.Key]; tied {
			addComp(op, multiCall{Single: &c}, multiResult{Single: r})
			return
		}
		addKey(op, c, r)
	}
	for op := range modelledOps(ops) {
		in, out := &op.Input, op.Output
		switch op.Kind {
		case OpGet:
			r := kvResult{}
			if out.KV != nil {
				r.Found, r.Value = true, out.KV.Value
			}
			add(op, kvCall{Op: OpGet, Key: in.Key, ValueKnown: true}, r)
		case OpPut:
			c := kvCall{Op: OpPut, Key: in.Key, Value: in.Value, PrevKnown: in.PrevKV}
			r := kvResult{}
			if out != nil && out.KV != nil {
				r.Found, r.Value = true, out.KV.Value
			}
			add(op, c, r)
		case OpDelete:
			c := kvCall{Op: OpDelete, Key: in.Key, PrevKnown: in.PrevKV}
			r := kvResult{}
			if out != nil {
				r.Deleted = out.Deleted
				if out.KV != nil {
					r.Found, r.Value = true, out.KV.Value
				}
			}
			add(op, c, r)
		case OpCAS:
			c := kvCall{Op: OpCAS, Key: in.Key, Value: in.Value, Expected: in.Expected, ExpectAbsent: in.ExpectAbsent}
			r := kvResult{}
			if out != nil {
				r.Succeeded = out.Succeeded
				if out.KV != nil {
					r.HasKV, r.Found, r.Value = true, true, out.KV.Value
				}
			}
			add(op, c, r)
		case OpMultiPut:
			for _, p := range putParts(op) {
				if p.Outcome == OutcomeFail {
					continue // definitely not applied
				}
				part := *op
				part.Outcome = p.Outcome
				var writes []kvWrite
				for _, i := range p.Indexes {
					if i >= 0 && i < len(in.Puts) {
						writes = append(writes, kvWrite{Key: in.Puts[i].Key, Value: in.Puts[i].Value})
					}
				}
				switch {
				case len(writes) == 1:
					add(&part, kvCall{Op: OpPut, Key: writes[0].Key, Value: writes[0].Value}, kvResult{})
				case len(writes) > 1:
					addComp(&part, multiCall{Writes: writes}, multiResult{})
				}
			}
		case OpMultiGet:
			if len(out.KVs) != len(in.Keys) {
				problems = append(problems, fmt.Sprintf("op %d: multi-get answered %d keys for %d", op.Index, len(out.KVs), len(in.Keys)))
				continue
			}
			for i, k := range in.Keys {
				kv := out.KVs[i]
				if kv.Key != k {
					problems = append(problems, fmt.Sprintf("op %d: multi-get answered %q for key %q", op.Index, kv.Key, k))
					break
				}
				add(op, kvCall{Op: OpGet, Key: k, ValueKnown: true}, kvResult{Found: kv.Version > 0, Value: kv.Value})
			}
		case OpTxn:
			if in.Txn == nil || len(in.Txn.keys()) == 0 {
				continue
			}
			r := multiResult{}
			if out != nil {
				r.Succeeded = out.Succeeded
			}
			addComp(op, multiCall{Txn: in.Txn}, r)
		case OpList:
			if p := listShape(op); p != "" {
				problems = append(problems, p)
				continue
			}
			returned := map[string]KV{}
			last := ""
			for _, kv := range out.KVs {
				returned[kv.Key] = kv
				last = kv.Key
			}
			for _, k := range keys {
				if !strings.HasPrefix(k, in.Prefix) || k <= in.StartAfter {
					continue
				}
				if out.More && k > last {
					break
				}
				c := kvCall{Op: OpGet, Key: k, ValueKnown: !in.KeysOnly, FromList: true}
				r := kvResult{}
				if kv, ok := returned[k]; ok {
					r.Found, r.Value = true, kv.Value
				}
				add(op, c, r)
			}
		}
	}
	for _, k := range keys {
		if len(byKey[k]) > 0 {
			ops, dropped := pruneKV(byKey[k])
			parts = append(parts, partition{Checker: CheckerKV, Name: k, Ops: ops, Pruned: dropped})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(byComp)) {
		parts = append(parts, partition{Checker: CheckerKV, Name: name, Ops: byComp[name]})
	}
	return parts, problems
}

// pruneKV drops unknown puts and compare-and-swaps whose value nobody
// observed. Such a write is explained by "never applied" (linearized after
// everything else), and removing it cannot turn an illegal history legal:
// in any linearization, no op between it and the next write observes the
// key's value (else its value would be observed), so the linearization
// stays legal without it, once unknown compare-and-swaps it made fail are
// moved to the end. Observations count every value a response carried and
// every value a compare-and-swap expected. A key with observations of mere
// existence (keys-only lists, deletes without prev_kv) is not pruned.
//
// Pruning matters for speed: porcupine may place an unknown write anywhere
// after its call, and on an illegal history it must try every placement
// before it can say so.
func pruneKV(ops []porcupine.Operation) ([]porcupine.Operation, int) {
	observed := map[string]bool{}
	for _, op := range ops {
		c, r := op.Input.(kvCall), op.Output.(kvResult)
		if (c.Op == OpGet && !c.ValueKnown) || (c.Op == OpDelete && !c.PrevKnown && !r.Unknown) {
			return ops, 0
		}
		if r.Found {
			observed[r.Value] = true
		}
		if c.Op == OpCAS && !c.ExpectAbsent {
			observed[c.Expected] = true
		}
	}
	return withoutOps(ops, func(op porcupine.Operation) bool {
		c, r := op.Input.(kvCall), op.Output.(kvResult)
		return r.Unknown && (c.Op == OpPut || c.Op == OpCAS) && !observed[c.Value]
	})
}

// includeInModel says whether an op is evidence for the models: ok ops and
// unknown writes; not failed ops and not stale reads.
func includeInModel(op *Op) bool {
	switch op.Outcome {
	case OutcomeOK:
		return !op.Input.Stale
	case OutcomeUnknown:
		return op.Kind.IsWrite()
	}
	return false
}

// listShape checks a list page against the API contract: keys ascending,
// all with the prefix, all after start_after, no more than the limit. It
// returns "" when the page is well formed.
func listShape(op *Op) string {
	in, out := &op.Input, op.Output
	limit := in.Limit
	if limit == 0 {
		limit = 1000
	}
	if uint32(len(out.KVs)) > limit {
		return fmt.Sprintf("op %d: list returned %d keys, limit %d", op.Index, len(out.KVs), limit)
	}
	prev := in.StartAfter
	for i, kv := range out.KVs {
		if !strings.HasPrefix(kv.Key, in.Prefix) {
			return fmt.Sprintf("op %d: list key %q lacks prefix %q", op.Index, kv.Key, in.Prefix)
		}
		if (i > 0 || in.StartAfter != "") && kv.Key <= prev {
			return fmt.Sprintf("op %d: list key %q not after %q", op.Index, kv.Key, prev)
		}
		prev = kv.Key
	}
	return ""
}

// withoutOps returns ops less those drop says go (in order, ops itself
// untouched) and how many went: what every prune function keeps.
func withoutOps(ops []porcupine.Operation, drop func(op porcupine.Operation) bool) ([]porcupine.Operation, int) {
	out := ops[:0:0]
	for _, op := range ops {
		if !drop(op) {
			out = append(out, op)
		}
	}
	return out, len(ops) - len(out)
}

// modelledOps yields the ops of ops that are evidence for the models (see
// includeInModel), in order.
func modelledOps(ops []Op) iter.Seq[*Op] {
	return func(yield func(*Op) bool) {
		for i := range ops {
			if op := &ops[i]; includeInModel(op) && !yield(op) {
				return
			}
		}
	}
}

// partitioner returns the porcupine operations of a model by partition key,
// empty, and the function that adds op to them as call c with result r, in
// the partition key(c) names (see modelOp; unknown is the result of an
// unknown outcome).
func partitioner[K comparable, C, R any](key func(C) K, unknown R) (map[K][]porcupine.Operation, func(op *Op, c C, r R)) {
	by := map[K][]porcupine.Operation{}
	return by, func(op *Op, c C, r R) {
		by[key(c)] = append(by[key(c)], modelOp(op, c, r, unknown))
	}
}

// modelOp is op as a porcupine operation of input in and output out (see
// outcomeOp).
func modelOp(op *Op, in, out, unknown any) porcupine.Operation {
	return outcomeOp(op.Client, op.Call, op.Return, op.Outcome == OutcomeUnknown, in, out, unknown, newOpMeta(op))
}

// outcomeOp is a porcupine operation; an unknown outcome has output
// unknown and never returns (it may take effect at any later point).
func outcomeOp(client int, call, ret int64, unknownOutcome bool, in, out, unknown, meta any) porcupine.Operation {
	if unknownOutcome {
		out, ret = unknown, infinity
	}
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret, Metadata: meta}
}
