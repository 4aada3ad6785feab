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
		case c.Reads != nil:
			return comp[c.Reads[0]]
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
			var read []kvWrite
			for i, k := range in.Keys {
				kv := out.KVs[i]
				if kv.Key != k {
					problems = append(problems, fmt.Sprintf("op %d: multi-get answered %q for key %q", op.Index, kv.Key, k))
					break
				}
				read = append(read, kvWrite{Key: k, Value: kv.Value, Delete: kv.Version == 0})
			}
			if len(read) < len(in.Keys) {
				continue
			}
			if snapshot(comp, op) {
				addComp(op, multiCall{Reads: in.Keys}, multiResult{Read: read})
				continue
			}
			for _, kv := range read {
				add(op, kvCall{Op: OpGet, Key: kv.Key, ValueKnown: true}, kvResult{Found: !kv.Delete, Value: kv.Value})
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
			ops, dropped := prune(byKey[k], kvFacts)
			parts = append(parts, partition{Checker: CheckerKV, Name: k, Ops: ops, Pruned: dropped})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(byComp)) {
		ops, dropped := prune(byComp[name], multiFacts)
		parts = append(parts, partition{Checker: CheckerKV, Name: name, Ops: ops, Pruned: dropped})
	}
	return parts, problems
}

// prune drops the unknown writes of a partition that "never applied"
// explains and that nothing could have seen in part: every key and value
// such a write may put (facts' Writes: puts only) is observed by no op
// (facts' Observed: a value a response carried, a compare or a
// compare-and-swap expected), and every op that sees a key it writes only
// in part (facts' Weak: existence, as a keys-only list page or a delete
// without prev_kv does, or inequality, as a failed txn does) returned
// before the write was called.
//
// Removing such a write W cannot turn an illegal history legal: take any
// legal linearization and drop W. Only W's keys change state, and only
// from W to the next write of each; an op placed there that observes the
// key's value would observe W's value, which nobody did, and no op that
// sees it in part can be placed there (it returned before W's call). What
// is left there are writes that do not observe (they end the stretch),
// and unknown compare-and-swaps and txns without a failure branch whose
// compares W made fail (a compare expects an observed value, never W's):
// they had no effect and move to the end, where an unknown op may go. An
// unknown txn with a failure branch is a weak observer of its compared
// keys for that reason (its return is +∞, so it keeps every earlier
// write). The linearization stays legal.
//
// Pruning matters for speed: porcupine may place an unknown write anywhere
// after its call, and on an illegal history it must try every placement
// before it can say so.
func prune(ops []porcupine.Operation, facts func(porcupine.Operation) pruneFacts) ([]porcupine.Operation, int) {
	all := make([]pruneFacts, len(ops))
	observed := map[kvWrite]bool{}
	weakUntil := map[string]int64{} // key → latest return of a weak observer
	for i, op := range ops {
		all[i] = facts(op)
		for _, o := range all[i].Observed {
			observed[o] = true
		}
		for _, k := range all[i].Weak {
			weakUntil[k] = max(weakUntil[k], op.Return)
		}
	}
	droppable := func(op porcupine.Operation, f pruneFacts) bool {
		if len(f.Writes) == 0 {
			return false
		}
		for _, w := range f.Writes {
			if w.Delete || observed[w] {
				return false
			}
			if until, ok := weakUntil[w.Key]; ok && until >= op.Call {
				return false
			}
		}
		return true
	}
	return withoutOps(ops, func(i int, op porcupine.Operation) bool { return droppable(op, all[i]) })
}

// pruneFacts is what prune needs to know of one porcupine operation.
type pruneFacts struct {
	// Writes: an unknown write's effects, if it may be dropped at all
	// (nil: it may not).
	Writes []kvWrite
	// Observed key/value pairs (Delete false).
	Observed []kvWrite
	// Weak: keys it observes only in part.
	Weak []string
}

// kvFacts are a per-key model operation's facts for prune.
func kvFacts(op porcupine.Operation) pruneFacts {
	return singleFacts(op.Input.(kvCall), op.Output.(kvResult))
}

func singleFacts(c kvCall, r kvResult) pruneFacts {
	var f pruneFacts
	if r.Found && (c.Op != OpGet || c.ValueKnown) {
		f.Observed = append(f.Observed, kvWrite{Key: c.Key, Value: r.Value})
	}
	switch c.Op {
	case OpGet:
		if !c.ValueKnown {
			f.Weak = []string{c.Key}
		}
	case OpDelete:
		if !r.Unknown && !c.PrevKnown {
			f.Weak = []string{c.Key}
		}
	case OpCAS:
		if !c.ExpectAbsent {
			f.Observed = append(f.Observed, kvWrite{Key: c.Key, Value: c.Expected})
		}
	}
	if r.Unknown && (c.Op == OpPut || c.Op == OpCAS) {
		f.Writes = []kvWrite{{Key: c.Key, Value: c.Value}}
	}
	return f
}

// multiFacts are a component's operation's facts for prune.
func multiFacts(op porcupine.Operation) pruneFacts {
	c, r := op.Input.(multiCall), op.Output.(multiResult)
	switch {
	case c.Single != nil:
		return singleFacts(*c.Single, r.Single)
	case c.Reads != nil:
		var f pruneFacts
		for _, kv := range r.Read {
			if !kv.Delete {
				f.Observed = append(f.Observed, kv)
			}
		}
		return f
	case c.Txn != nil:
		var f pruneFacts
		for _, cm := range c.Txn.Compares {
			if !cm.Absent {
				f.Observed = append(f.Observed, kvWrite{Key: cm.Key, Value: cm.Value})
			}
			if (!r.Unknown && !r.Succeeded) || (r.Unknown && len(c.Txn.Failure) > 0) {
				f.Weak = append(f.Weak, cm.Key)
			}
		}
		if r.Unknown && len(c.Txn.Failure) == 0 {
			for _, w := range c.Txn.Success {
				f.Writes = append(f.Writes, kvWrite(w))
			}
		}
		return f
	}
	if r.Unknown {
		return pruneFacts{Writes: c.Writes}
	}
	return pruneFacts{}
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
func withoutOps(ops []porcupine.Operation, drop func(i int, op porcupine.Operation) bool) ([]porcupine.Operation, int) {
	out := ops[:0:0]
	for i, op := range ops {
		if !drop(i, op) {
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
