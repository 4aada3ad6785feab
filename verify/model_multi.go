package verify

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
)

// The KV batch calls in the KV checker.
//
// A multi-get is decomposed into reads of single keys, all with its call
// and return times, as a list page is: each group's part is a
// linearizable read of its own, so each key's observation is
// linearizable on its own. A multi-get answered by one group (the
// recorder keeps its header only then: Output.Group) whose keys all lie
// in one component (below) is one read of all of them instead: a group
// reads its keys from one state, so a multi-put or txn seen half applied
// is caught.
//
// A multi-put is one atomic write per data group part (Output.Parts; a
// part that was not applied is dropped, an unknown part is an unknown
// write). When its parts are not known (the call failed with an unknown
// outcome) each put is an unknown write of its own: more permissive than
// the truth (all of a part or none), so never a false alarm.
//
// A transaction and a multi-put part of several keys tie their keys
// together: their effect on one key depends on (or comes with) the others'.
// Keys so tied form components (union-find over every txn and multi-key
// part of the history); each component is one partition whose state is a
// register per key, and every op on one of its keys (single-key ops, list
// and multi-get observations, parts, txns) goes to it. A txn step
// evaluates its compares against the state and applies the branch they
// select; its succeeded flag is an observation; an unknown txn is
// deterministic given the state, so porcupine may place it anywhere after
// its call. Keys outside components stay one partition each, as before.

// kvWrite is one write of an atomic multi-key write.
type kvWrite struct {
	Key    string
	Value  string
	Delete bool
}

// multiCall is the porcupine input of a component: one of a single-key
// call (Single, the per-key model's step on its key), an atomic write of
// several keys (Writes), a transaction (Txn), or an atomic read of
// several keys (Reads).
type multiCall struct {
	Single *kvCall
	Writes []kvWrite
	Txn    *TxnInput
	Reads  []string
}

// multiResult is the porcupine output of a component. Read is what an
// atomic read saw, by key: a pair (Delete false) or an absent key
// (Delete true).
type multiResult struct {
	Single    kvResult
	Unknown   bool
	Succeeded bool
	Read      []kvWrite
}

// multiState is a component's registers, by key (copied on write).
type multiState struct {
	keys map[string]kvState
}

func (s multiState) equalState(other any) bool {
	o, ok := other.(multiState)
	return ok && maps.Equal(s.keys, o.keys)
}

func (s multiState) stateHash() uint64 {
	h := fnv.New64a()
	for _, k := range slices.Sorted(maps.Keys(s.keys)) {
		fmt.Fprintf(h, "%s\x00%d\x00", k, s.keys[k].stateHash())
	}
	return h.Sum64()
}

func (s multiState) String() string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(s.keys)) {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%s", k, s.keys[k])
	}
	if b.Len() == 0 {
		return "∅"
	}
	return b.String()
}

// with returns s with writes applied.
func (s multiState) with(writes []kvWrite) multiState {
	next := multiState{keys: maps.Clone(s.keys)}
	if next.keys == nil {
		next.keys = map[string]kvState{}
	}
	for _, w := range writes {
		if w.Delete {
			delete(next.keys, w.Key)
		} else {
			next.keys[w.Key] = kvState{Exists: true, Value: w.Value}
		}
	}
	return next
}

func multiStep(s multiState, c multiCall, r multiResult) (bool, multiState) {
	switch {
	case c.Single != nil:
		ok, next := kvStep(s.keys[c.Single.Key], *c.Single, r.Single)
		if !ok {
			return false, s
		}
		if next == s.keys[c.Single.Key] {
			return true, s
		}
		if next.Exists {
			return true, s.with([]kvWrite{{Key: c.Single.Key, Value: next.Value}})
		}
		return true, s.with([]kvWrite{{Key: c.Single.Key, Delete: true}})
	case c.Txn != nil:
		match := true
		for _, cm := range c.Txn.Compares {
			st := s.keys[cm.Key]
			if cm.Absent {
				match = match && !st.Exists
			} else {
				match = match && st.Exists && st.Value == cm.Value
			}
		}
		if !r.Unknown && r.Succeeded != match {
			return false, s
		}
		branch := c.Txn.Failure
		if match {
			branch = c.Txn.Success
		}
		writes := make([]kvWrite, len(branch))
		for i, w := range branch {
			writes[i] = kvWrite(w)
		}
		return true, s.with(writes)
	case c.Reads != nil:
		for _, kv := range r.Read {
			if !s.keys[kv.Key].observed(!kv.Delete, kv.Value, true) {
				return false, s
			}
		}
		return true, s
	}
	return true, s.with(c.Writes)
}

func describeMulti(c multiCall, r multiResult) string {
	switch {
	case c.Single != nil:
		return describeKV(*c.Single, r.Single)
	case c.Txn != nil:
		var b strings.Builder
		b.WriteString("txn(")
		for i, cm := range c.Txn.Compares {
			if i > 0 {
				b.WriteString(" ∧ ")
			}
			if cm.Absent {
				fmt.Fprintf(&b, "%q=∅", cm.Key)
			} else {
				fmt.Fprintf(&b, "%q=%q", cm.Key, cm.Value)
			}
		}
		fmt.Fprintf(&b, " ? %s : %s)", describeWrites(c.Txn.Success), describeWrites(c.Txn.Failure))
		if r.Unknown {
			b.WriteString(" ?unknown")
		} else {
			fmt.Fprintf(&b, " → %t", r.Succeeded)
		}
		return b.String()
	case c.Reads != nil:
		parts := make([]string, len(r.Read))
		for i, kv := range r.Read {
			parts[i] = fmt.Sprintf("%q=%s", kv.Key, kvState{Exists: !kv.Delete, Value: kv.Value})
		}
		return "multi-get → [" + strings.Join(parts, ", ") + "]"
	}
	ws := make([]TxnWrite, len(c.Writes))
	for i, w := range c.Writes {
		ws[i] = TxnWrite(w)
	}
	s := "multi-put" + describeWrites(ws)
	if r.Unknown {
		s += " ?unknown"
	}
	return s
}

func describeWrites(ws []TxnWrite) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		if w.Delete {
			parts[i] = fmt.Sprintf("del %q", w.Key)
		} else {
			parts[i] = fmt.Sprintf("%q←%q", w.Key, w.Value)
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// txnKeys is every key a recorded txn names.
func (t *TxnInput) keys() []string {
	var out []string
	for _, c := range t.Compares {
		out = append(out, c.Key)
	}
	for _, ws := range [][]TxnWrite{t.Success, t.Failure} {
		for _, w := range ws {
			out = append(out, w.Key)
		}
	}
	return out
}

// putParts returns a multi-put's parts: the recorded ones, or (unknown
// parts) one part per put with the op's outcome.
func putParts(op *Op) []PutPart {
	if op.Output != nil && len(op.Output.Parts) > 0 {
		return op.Output.Parts
	}
	parts := make([]PutPart, len(op.Input.Puts))
	for i := range parts {
		parts[i] = PutPart{Indexes: []int{i}, Outcome: op.Outcome}
	}
	return parts
}

// components ties the keys of every txn and multi-key multi-put part of
// ops together: it returns each tied key's component name (its keys,
// sorted, joined by ","), and nothing for keys tied to no other op's.
func components(ops []Op) map[string]string {
	parent := map[string]string{}
	var find func(k string) string
	find = func(k string) string {
		p, ok := parent[k]
		if !ok || p == k {
			parent[k] = k
			return k
		}
		root := find(p)
		parent[k] = root
		return root
	}
	tie := func(keys []string) {
		for _, k := range keys {
			parent[find(k)] = find(keys[0])
		}
	}
	for op := range modelledOps(ops) {
		switch op.Kind {
		case OpTxn:
			if op.Input.Txn != nil {
				tie(op.Input.Txn.keys())
			}
		case OpMultiPut:
			for _, p := range putParts(op) {
				if len(p.Indexes) > 1 {
					keys := make([]string, 0, len(p.Indexes))
					for _, i := range p.Indexes {
						if i >= 0 && i < len(op.Input.Puts) {
							keys = append(keys, op.Input.Puts[i].Key)
						}
					}
					tie(keys)
				}
			}
		}
	}
	members := map[string][]string{}
	for k := range parent {
		members[find(k)] = append(members[find(k)], k)
	}
	out := map[string]string{}
	for _, keys := range members {
		slices.Sort(keys)
		name := strings.Join(keys, ",")
		for _, k := range keys {
			out[k] = name
		}
	}
	return out
}

// snapshot says whether a multi-get is one atomic read in the checker:
// one group answered it (Output.Group) and its keys all lie in one
// component.
func snapshot(comp map[string]string, op *Op) bool {
	keys := op.Input.Keys
	if op.Output.Group == "" || len(keys) < 2 {
		return false
	}
	name, ok := comp[keys[0]]
	if !ok {
		return false
	}
	for _, k := range keys[1:] {
		if comp[k] != name {
			return false
		}
	}
	return true
}
