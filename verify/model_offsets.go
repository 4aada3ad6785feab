package verify

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strings"

	"github.com/anishathalye/porcupine"
)

// Offsets are checked by two models.
//
// The "offsets" checker is a register per (consumer group, topic,
// partition), like the KV model: a commit batch becomes one write per
// partition, a fetch one read per requested partition, and a delete-group
// one delete on every partition of that consumer group that appears
// anywhere in the history. It catches offsets going backwards after an
// acknowledged commit, lost commits, commits that were reported failed but
// applied, and partitions that survive an acknowledged delete-group.
//
// The "offsets-group" checker holds the whole state of one consumer group
// (partition → offset) and keeps each call whole: each consumer group's
// part of a commit batch is one write, a fetch of several partitions of a
// consumer group is one read, a delete-group is one delete that must
// report as deleted exactly the partitions that held offsets. The API
// applies each consumer group's part of a batch, and a delete-group,
// atomically (all offsets of a consumer group live in one offset group);
// this checker catches a fetch that sees half of such a write. It assumes
// a fetch reads one consistent state of the offset group.
//
// Unknown writes get a return time at the end of time, failed calls and
// stale fetches are dropped, exactly as in the KV model.

// offCall is the porcupine input of the per-partition offsets model.
type offCall struct {
	Op       OpKind // OpCommit, OpFetch, OpDeleteGroup
	TP       TopicPartition
	Offset   int64
	Metadata string
}

// offResult is its output.
type offResult struct {
	Unknown  bool
	Found    bool
	Offset   int64
	Metadata string
}

// offState is one partition's committed offset.
type offState struct {
	Found    bool
	Offset   int64
	Metadata string
}

func (s offState) stateHash() uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%t\x00%d\x00%s", s.Found, s.Offset, s.Metadata)
	return h.Sum64()
}

func (s offState) String() string {
	if !s.Found {
		return "∅"
	}
	return fmt.Sprintf("%d(%s)", s.Offset, s.Metadata)
}

func offStep(s offState, c offCall, r offResult) (bool, offState) {
	switch c.Op {
	case OpCommit:
		return true, offState{Found: true, Offset: c.Offset, Metadata: c.Metadata}
	case OpFetch:
		if r.Found != s.Found {
			return false, s
		}
		return !r.Found || (r.Offset == s.Offset && r.Metadata == s.Metadata), s
	case OpDeleteGroup:
		return true, offState{}
	}
	return false, s
}

func describeOff(c offCall, r offResult) string {
	var s string
	switch c.Op {
	case OpCommit:
		s = fmt.Sprintf("commit(%s, %d, %q)", c.TP, c.Offset, c.Metadata)
	case OpFetch:
		v := "∅"
		if r.Found {
			v = fmt.Sprintf("%d(%s)", r.Offset, r.Metadata)
		}
		s = fmt.Sprintf("fetch(%s) → %s", c.TP, v)
	case OpDeleteGroup:
		s = fmt.Sprintf("delete-group(%s)", c.TP.Group)
	}
	if r.Unknown {
		s += " ?unknown"
	}
	return s
}

// offsetPartitions builds one partition per TopicPartition, sorted by name.
func offsetPartitions(ops []Op) (parts []partition, problems []string) {
	// Every partition of each consumer group that the history names: a
	// delete-group deletes each of them.
	byGroup := map[string]map[TopicPartition]bool{}
	note := func(tp TopicPartition) {
		if byGroup[tp.Group] == nil {
			byGroup[tp.Group] = map[TopicPartition]bool{}
		}
		byGroup[tp.Group][tp] = true
	}
	for i := range ops {
		for _, c := range ops[i].Input.Offsets {
			note(c.TP())
		}
		for _, tp := range ops[i].Input.Partitions {
			note(tp)
		}
	}
	byTP, add := partitioner(func(c offCall) TopicPartition { return c.TP }, offResult{Unknown: true})
	for op := range modelledOps(ops) {
		switch op.Kind {
		case OpCommit:
			for _, e := range op.Input.Offsets {
				add(op, offCall{Op: OpCommit, TP: e.TP(), Offset: e.Offset, Metadata: e.Metadata}, offResult{})
			}
		case OpFetch:
			if p := fetchShape(op); p != "" {
				problems = append(problems, p)
				continue
			}
			for j, tp := range op.Input.Partitions {
				v := op.Output.Offsets[j]
				add(op, offCall{Op: OpFetch, TP: tp}, offResult{Found: v.Found, Offset: v.Offset, Metadata: v.Metadata})
			}
		case OpDeleteGroup:
			for _, tp := range sortedTPs(byGroup[op.Input.Group]) {
				add(op, offCall{Op: OpDeleteGroup, TP: tp}, offResult{})
			}
		}
	}
	tps := make([]TopicPartition, 0, len(byTP))
	for tp := range byTP {
		tps = append(tps, tp)
	}
	slices.SortFunc(tps, compareTP)
	for _, tp := range tps {
		ops, dropped := pruneOffsets(byTP[tp])
		parts = append(parts, partition{Checker: CheckerOffsets, Name: tp.String(), Ops: ops, Pruned: dropped})
	}
	return parts, problems
}

// pruneOffsets drops unknown commits whose offset and metadata no fetch
// returned, for the reasons given at prune.
func pruneOffsets(ops []porcupine.Operation) ([]porcupine.Operation, int) {
	type seen struct {
		offset   int64
		metadata string
	}
	observed := map[seen]bool{}
	for _, op := range ops {
		if r := op.Output.(offResult); r.Found {
			observed[seen{r.Offset, r.Metadata}] = true
		}
	}
	return withoutOps(ops, func(_ int, op porcupine.Operation) bool {
		c, r := op.Input.(offCall), op.Output.(offResult)
		return r.Unknown && c.Op == OpCommit && !observed[seen{c.Offset, c.Metadata}]
	})
}

// pruneGroup drops unknown commits none of whose entries a fetch returned,
// unless a delete-group in the partition reported a count (which observes
// how many partitions exist).
func pruneGroup(ops []porcupine.Operation) ([]porcupine.Operation, int) {
	type seen struct {
		topic     string
		partition int32
		offset    int64
		metadata  string
	}
	observed := map[seen]bool{}
	for _, op := range ops {
		c, r := op.Input.(grpCall), op.Output.(grpResult)
		if c.Op == OpDeleteGroup && !r.Unknown {
			return ops, 0
		}
		for j, v := range r.Values {
			if v.Found {
				observed[seen{c.Partitions[j].Topic, c.Partitions[j].Partition, v.Offset, v.Metadata}] = true
			}
		}
	}
	return withoutOps(ops, func(_ int, op porcupine.Operation) bool {
		c, r := op.Input.(grpCall), op.Output.(grpResult)
		return r.Unknown && c.Op == OpCommit && !slices.ContainsFunc(c.Commits, func(e OffsetCommit) bool {
			return observed[seen{e.Topic, e.Partition, e.Offset, e.Metadata}]
		})
	})
}

func compareTP(a, b TopicPartition) int {
	return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
}

func sortedTPs(set map[TopicPartition]bool) []TopicPartition {
	out := make([]TopicPartition, 0, len(set))
	for tp := range set {
		out = append(out, tp)
	}
	slices.SortFunc(out, compareTP)
	return out
}

// fetchShape checks a fetch response: one value per requested partition,
// in request order. It returns "" when the response is well formed.
func fetchShape(op *Op) string {
	if len(op.Output.Offsets) != len(op.Input.Partitions) {
		return fmt.Sprintf("op %d: fetch of %d partitions returned %d values", op.Index, len(op.Input.Partitions), len(op.Output.Offsets))
	}
	for j, v := range op.Output.Offsets {
		want := op.Input.Partitions[j]
		if v.TopicPartition != (TopicPartition{}) && v.TopicPartition != want {
			return fmt.Sprintf("op %d: fetch value %d is for %s, want %s", op.Index, j, v.TopicPartition, want)
		}
	}
	return ""
}

// grpEntry is one partition's offset inside a consumer group's state.
type grpEntry struct {
	Topic     string
	Partition int32
	Offset    int64
	Metadata  string
}

// grpState is a consumer group's committed offsets, sorted by topic and
// partition.
type grpState = sortedState[grpEntry]

// compare orders entries by topic and partition.
func (e grpEntry) compare(o grpEntry) int {
	return cmp.Or(cmp.Compare(e.Topic, o.Topic), cmp.Compare(e.Partition, o.Partition))
}

func (e grpEntry) hashTo(w io.Writer) {
	fmt.Fprintf(w, "%s\x00%d\x00%d\x00%s\x00", e.Topic, e.Partition, e.Offset, e.Metadata)
}

func (e grpEntry) same(o grpEntry) bool { return e == o }

func (e grpEntry) String() string {
	return fmt.Sprintf("%s/%d:%d(%s)", e.Topic, e.Partition, e.Offset, e.Metadata)
}

// The grpEntry methods sortedState calls (staticcheck does not see calls
// through a type parameter).
var _, _, _ = grpEntry.compare, grpEntry.hashTo, grpEntry.same

// grpCall is the porcupine input of the consumer-group model.
type grpCall struct {
	Op         OpKind // OpCommit, OpFetch, OpDeleteGroup
	Group      string
	Commits    []OffsetCommit
	Partitions []TopicPartition
}

// grpResult is its output.
type grpResult struct {
	Unknown bool
	Values  []OffsetValue // fetch, in Partitions order
	Count   uint64        // delete-group
}

func grpStep(s *grpState, c grpCall, r grpResult) (bool, *grpState) {
	switch c.Op {
	case OpCommit:
		puts := make([]grpEntry, len(c.Commits))
		for i, e := range c.Commits {
			puts[i] = grpEntry{Topic: e.Topic, Partition: e.Partition, Offset: e.Offset, Metadata: e.Metadata}
		}
		return true, s.put(puts)
	case OpFetch:
		for j, tp := range c.Partitions {
			v := r.Values[j]
			e, found := s.find(grpEntry{Topic: tp.Topic, Partition: tp.Partition})
			if v.Found != found || (found && (v.Offset != e.Offset || v.Metadata != e.Metadata)) {
				return false, s
			}
		}
		return true, s
	case OpDeleteGroup:
		if !r.Unknown && r.Count != uint64(s.len()) {
			return false, s
		}
		return true, newSortedState[grpEntry](nil)
	}
	return false, s
}

func describeGrp(c grpCall, r grpResult) string {
	var b strings.Builder
	switch c.Op {
	case OpCommit:
		fmt.Fprintf(&b, "commit(%s:", c.Group)
		for _, e := range c.Commits {
			fmt.Fprintf(&b, " %s/%d=%d(%s)", e.Topic, e.Partition, e.Offset, e.Metadata)
		}
		b.WriteString(")")
	case OpFetch:
		fmt.Fprintf(&b, "fetch(%s) →", c.Group)
		for j, tp := range c.Partitions {
			v := "∅"
			if j < len(r.Values) && r.Values[j].Found {
				v = fmt.Sprintf("%d(%s)", r.Values[j].Offset, r.Values[j].Metadata)
			}
			fmt.Fprintf(&b, " %s/%d=%s", tp.Topic, tp.Partition, v)
		}
	case OpDeleteGroup:
		fmt.Fprintf(&b, "delete-group(%s)", c.Group)
		if !r.Unknown {
			fmt.Fprintf(&b, " → %d", r.Count)
		}
	}
	if r.Unknown {
		b.WriteString(" ?unknown")
	}
	return b.String()
}

// groupPartitions builds one partition per consumer group, sorted by name.
// Shape problems are reported by offsetPartitions; malformed fetches are
// skipped here.
func groupPartitions(ops []Op) []partition {
	byGroup, add := partitioner(func(c grpCall) string { return c.Group }, grpResult{Unknown: true})
	for op := range modelledOps(ops) {
		switch op.Kind {
		case OpCommit:
			// Each consumer group's part of a batch is one atomic write.
			var order []string
			parts := map[string][]OffsetCommit{}
			for _, e := range op.Input.Offsets {
				if _, ok := parts[e.Group]; !ok {
					order = append(order, e.Group)
				}
				parts[e.Group] = append(parts[e.Group], e)
			}
			for _, g := range order {
				add(op, grpCall{Op: OpCommit, Group: g, Commits: parts[g]}, grpResult{})
			}
		case OpFetch:
			if fetchShape(op) != "" {
				continue
			}
			var order []string
			tps := map[string][]TopicPartition{}
			vals := map[string][]OffsetValue{}
			for j, tp := range op.Input.Partitions {
				if _, ok := tps[tp.Group]; !ok {
					order = append(order, tp.Group)
				}
				tps[tp.Group] = append(tps[tp.Group], tp)
				vals[tp.Group] = append(vals[tp.Group], op.Output.Offsets[j])
			}
			for _, g := range order {
				add(op, grpCall{Op: OpFetch, Group: g, Partitions: tps[g]}, grpResult{Values: vals[g]})
			}
		case OpDeleteGroup:
			r := grpResult{}
			if op.Output != nil {
				r.Count = op.Output.Count
			}
			add(op, grpCall{Op: OpDeleteGroup, Group: op.Input.Group}, r)
		}
	}
	names := make([]string, 0, len(byGroup))
	for g := range byGroup {
		names = append(names, g)
	}
	slices.Sort(names)
	parts := make([]partition, 0, len(names))
	for _, g := range names {
		ops, dropped := pruneGroup(byGroup[g])
		parts = append(parts, partition{Checker: CheckerOffsetsGroup, Name: g, Ops: ops, Pruned: dropped})
	}
	return parts
}
