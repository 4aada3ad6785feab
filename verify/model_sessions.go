package verify

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/metamq/meta/rpc/metapb"
)

// CheckerSessions names the sessions checker.
const CheckerSessions = "sessions"

// Sessions are checked by two porcupine models, both under the "sessions"
// checker, plus checks of the responses' shape and revisions.
//
// "client <id>" partitions are a register per client id, like the KV
// model: a session-put batch is one write per session it names, a
// session-delete batch one delete per client id (its deleted flag
// observes whether the session existed), a session-get one read, and a
// session-list page is decomposed into reads of single client ids exactly
// like a KV list (a client id the history names, after start_after and
// not returned, is a read of "absent" only if the page covered it: up to
// the last returned id when more=true, every id when more=false). The
// register holds the whole session as written (broker id, connected,
// expiry interval, state); the workload makes every state unique, so a
// read names the write it saw.
//
// "group <data-i>" partitions hold every session of one data group and
// keep each call's part in that group whole: a put batch's part is one
// write of several sessions, a delete batch's part one delete whose
// flags must match, and a list page's part one read of every id of the
// group it covered. The API applies each data group's part of a batch as
// one raft entry, and each group's part of a list is one read of that
// group, so a page that sees half of a batch is a violation. Gets are
// left to the per-client model.
//
// Client ids only seen in list pages (other runs' sessions) are not
// checked. Expiry is time-driven by the leader and not modelled: the
// workload's sessions have an expiry interval far longer than a run (and
// connected sessions never expire), so within a run the model is a plain
// register. Unknown writes get the end of time as return time; unknown
// puts whose state nobody observed are left out, unless a delete that
// reported the session existing could be explained by them.

// sessCall is the porcupine input of the per-client model.
type sessCall struct {
	Op       BrokerOpKind // OpSessionPut, OpSessionDelete, OpSessionGet (also list observations)
	ID       string
	Value    SessionValue // put
	FromList bool
}

// sessResult is its output.
type sessResult struct {
	Unknown bool
	Found   bool         // get: found; delete: existed
	Value   SessionValue // get: what was read
}

// sessState is one client id's register.
type sessState struct {
	Exists bool
	Value  SessionValue
}

func (s sessState) String() string {
	if !s.Exists {
		return "∅"
	}
	return describeSession(s.Value)
}

func describeSession(v SessionValue) string {
	conn := "off"
	if v.Connected {
		conn = "on"
	}
	return fmt.Sprintf("%s@%s/%s", v.State, v.BrokerID, conn)
}

// sameSession compares what a put writes (server-set fields aside).
func sameSession(a, b SessionValue) bool {
	return a.BrokerID == b.BrokerID && a.Connected == b.Connected && a.Expiry == b.Expiry && a.State == b.State
}

func sessStep(s sessState, c sessCall, r sessResult) (bool, sessState) {
	switch c.Op {
	case OpSessionPut:
		v := c.Value
		v.ClientID, v.CreateRevision, v.ModRevision, v.Version = c.ID, 0, 0, 0
		return true, sessState{Exists: true, Value: v}
	case OpSessionDelete:
		if !r.Unknown && r.Found != s.Exists {
			return false, s
		}
		return true, sessState{}
	case OpSessionGet:
		if r.Found != s.Exists {
			return false, s
		}
		return !r.Found || sameSession(r.Value, s.Value), s
	}
	return false, s
}

func describeSess(c sessCall, r sessResult) string {
	var s string
	switch c.Op {
	case OpSessionPut:
		s = fmt.Sprintf("put(%s = %s)", c.ID, describeSession(c.Value))
	case OpSessionDelete:
		s = fmt.Sprintf("delete(%s)", c.ID)
		if !r.Unknown {
			s += fmt.Sprintf(" → existed=%t", r.Found)
		}
	case OpSessionGet:
		op := "get"
		if c.FromList {
			op = "list⊃"
		}
		v := "∅"
		if r.Found {
			v = describeSession(r.Value)
		}
		s = fmt.Sprintf("%s(%s) → %s", op, c.ID, v)
	}
	if r.Unknown {
		s += " ?unknown"
	}
	return s
}

// sessEntry is one session inside a data group's state.
type sessEntry struct {
	ID    string
	Value SessionValue
}

// sessGroup is a data group's sessions, sorted by id.
type sessGroup = sortedState[sessEntry]

// compare orders entries by id.
func (e sessEntry) compare(o sessEntry) int { return cmp.Compare(e.ID, o.ID) }

func (e sessEntry) hashTo(w io.Writer) {
	fmt.Fprintf(w, "%s\x00%s\x00%t\x00%d\x00%s\x00", e.ID, e.Value.BrokerID, e.Value.Connected, e.Value.Expiry, e.Value.State)
}

func (e sessEntry) same(o sessEntry) bool { return e.ID == o.ID && sameSession(e.Value, o.Value) }

func (e sessEntry) String() string { return e.ID + "=" + describeSession(e.Value) }

// The sessEntry methods sortedState calls (staticcheck does not see calls
// through a type parameter).
var _, _, _ = sessEntry.compare, sessEntry.hashTo, sessEntry.same

// sessGroupCall is the porcupine input of the data-group model.
type sessGroupCall struct {
	Op     BrokerOpKind // OpSessionPut, OpSessionDelete, OpSessionList
	Group  string
	Puts   []SessionValue // put: the group's part
	IDs    []string       // delete: the group's part; list: the ids covered
	Single bool
}

// sessGroupResult is its output.
type sessGroupResult struct {
	Unknown bool
	Deleted []bool                  // delete, in IDs order
	Read    map[string]SessionValue // list: what was returned of IDs
}

func sessGroupStep(s *sessGroup, c sessGroupCall, r sessGroupResult) (bool, *sessGroup) {
	switch c.Op {
	case OpSessionPut:
		puts := make([]sessEntry, len(c.Puts))
		for i, v := range c.Puts {
			puts[i] = sessEntry{ID: v.ClientID, Value: SessionValue{BrokerID: v.BrokerID, Connected: v.Connected, Expiry: v.Expiry, State: v.State}}
		}
		return true, s.put(puts)
	case OpSessionDelete:
		var entries []sessEntry
		for j, id := range c.IDs {
			_, ok := s.find(sessEntry{ID: id})
			if !r.Unknown && r.Deleted[j] != ok {
				return false, s
			}
		}
		if s != nil {
			entries = slices.DeleteFunc(slices.Clone(s.entries), func(e sessEntry) bool { return slices.Contains(c.IDs, e.ID) })
		}
		return true, newSortedState(entries)
	case OpSessionList:
		for _, id := range c.IDs {
			e, ok := s.find(sessEntry{ID: id})
			got, read := r.Read[id]
			if ok != read || (ok && !sameSession(e.Value, got)) {
				return false, s
			}
		}
		return true, s
	}
	return false, s
}

func describeSessGroup(c sessGroupCall, r sessGroupResult) string {
	var b strings.Builder
	switch c.Op {
	case OpSessionPut:
		fmt.Fprintf(&b, "put(%s:", c.Group)
		for _, v := range c.Puts {
			fmt.Fprintf(&b, " %s=%s", v.ClientID, describeSession(v))
		}
		b.WriteString(")")
	case OpSessionDelete:
		fmt.Fprintf(&b, "delete(%s: %s)", c.Group, strings.Join(c.IDs, " "))
		if !r.Unknown {
			fmt.Fprintf(&b, " → %v", r.Deleted)
		}
	case OpSessionList:
		fmt.Fprintf(&b, "list(%s) →", c.Group)
		for _, id := range c.IDs {
			v := "∅"
			if got, ok := r.Read[id]; ok {
				v = describeSession(got)
			}
			fmt.Fprintf(&b, " %s=%s", id, v)
		}
	}
	if r.Unknown {
		b.WriteString(" ?unknown")
	}
	return b.String()
}

// sessionsModel is the porcupine model of both session partitions kinds.
func sessionsModel() porcupine.Model {
	return newModel("broker ", partKind(sessStep, describeSess), partKind(sessGroupStep, describeSessGroup))
}

func (s sessState) equalState(other any) bool {
	o, ok := other.(sessState)
	return ok && s.Exists == o.Exists && (!s.Exists || sameSession(s.Value, o.Value))
}

func (s sessState) stateHash() uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%t\x00%s\x00%s\x00%t\x00%d", s.Exists, s.Value.State, s.Value.BrokerID, s.Value.Connected, s.Value.Expiry)
	return h.Sum64()
}

func brokerOpMeta(op *BrokerOp) *opMeta {
	return &opMeta{Index: op.Index, Process: op.Process, Endpoint: op.Endpoint, Outcome: op.Outcome, Final: op.Final}
}

// includeBrokerOp says whether an op is evidence for a model: ok ops and
// unknown writes.
func includeBrokerOp(op *BrokerOp) bool {
	switch op.Outcome {
	case OutcomeOK:
		return true
	case OutcomeUnknown:
		return op.Kind.IsWrite()
	}
	return false
}

// sessionUniverse returns the client ids the non-list session ops name,
// sorted.
func sessionUniverse(ops []BrokerOp, finalToo bool) []string {
	ids := map[string]bool{}
	for i := range ops {
		op := &ops[i]
		if op.Final && !finalToo {
			continue
		}
		switch op.Kind {
		case OpSessionPut:
			for _, s := range op.Input.Sessions {
				ids[s.ClientID] = true
			}
		case OpSessionDelete:
			for _, id := range op.Input.ClientIDs {
				ids[id] = true
			}
		case OpSessionGet:
			ids[op.Input.ClientID] = true
		}
	}
	out := make([]string, 0, len(ids))
	for id := range ids {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// sessionShape checks a response against the API: one revision and one
// flag per entry, a page in ascending order after start_after, within
// its limit, a get of the id asked for. "" when well formed.
func sessionShape(op *BrokerOp) string {
	in, out := &op.Input, op.Output
	switch op.Kind {
	case OpSessionPut:
		if len(out.Revisions) != len(in.Sessions) {
			return fmt.Sprintf("broker op %d: put of %d sessions returned %d revisions", op.Index, len(in.Sessions), len(out.Revisions))
		}
	case OpSessionDelete:
		if len(out.Deleted) != len(in.ClientIDs) {
			return fmt.Sprintf("broker op %d: delete of %d sessions returned %d flags", op.Index, len(in.ClientIDs), len(out.Deleted))
		}
	case OpSessionGet:
		if out.Session != nil && out.Session.ClientID != in.ClientID {
			return fmt.Sprintf("broker op %d: get of %q returned %q", op.Index, in.ClientID, out.Session.ClientID)
		}
	case OpSessionList:
		limit := in.Limit
		if limit == 0 {
			limit = metapb.DefaultListLimit
		}
		if uint32(len(out.Sessions)) > limit {
			return fmt.Sprintf("broker op %d: list returned %d sessions, limit %d", op.Index, len(out.Sessions), limit)
		}
		prev := in.StartAfter
		for i, s := range out.Sessions {
			if (i > 0 || in.StartAfter != "") && s.ClientID <= prev {
				return fmt.Sprintf("broker op %d: list id %q not after %q", op.Index, s.ClientID, prev)
			}
			prev = s.ClientID
		}
	}
	return ""
}

// sessionPartitions builds the per-client and per-group partitions. m is
// the number of data groups (0: unknown, one group).
func sessionPartitions(ops []BrokerOp, route DataRoute) (parts []partition, problems []string) {
	universe := sessionUniverse(ops, true)
	inUniverse := map[string]bool{}
	for _, id := range universe {
		inUniverse[id] = true
	}
	groupOf := func(id string) string { return route.Group([]byte(id)) }
	byID := map[string][]porcupine.Operation{}
	byGroup := map[string][]porcupine.Operation{}
	add := func(op *BrokerOp, c sessCall, r sessResult) {
		byID[c.ID] = append(byID[c.ID], outcomeOp(op.Client, op.Call, op.Return, op.Outcome == OutcomeUnknown,
			c, r, sessResult{Unknown: true}, brokerOpMeta(op)))
	}
	addGroup := func(op *BrokerOp, c sessGroupCall, r sessGroupResult) {
		byGroup[c.Group] = append(byGroup[c.Group], outcomeOp(op.Client, op.Call, op.Return, op.Outcome == OutcomeUnknown,
			c, r, sessGroupResult{Unknown: true}, brokerOpMeta(op)))
	}
	// putRev: the revision an acknowledged put reported for each state.
	putRev := map[string]uint64{}
	for i := range ops {
		op := &ops[i]
		if !includeBrokerOp(op) {
			continue
		}
		if op.Outcome == OutcomeOK {
			if p := sessionShape(op); p != "" {
				problems = append(problems, p)
				continue
			}
		}
		switch op.Kind {
		case OpSessionPut:
			var order []string
			part := map[string][]SessionValue{}
			revs := map[string]uint64{}
			for j, s := range op.Input.Sessions {
				add(op, sessCall{Op: OpSessionPut, ID: s.ClientID, Value: s}, sessResult{})
				g := groupOf(s.ClientID)
				if _, ok := part[g]; !ok {
					order = append(order, g)
				}
				part[g] = append(part[g], s)
				if op.Output != nil {
					rev := op.Output.Revisions[j]
					putRev[s.State] = rev
					if r, ok := revs[g]; ok && r != rev {
						problems = append(problems, fmt.Sprintf("broker op %d: one batch's part in %s reported revisions %d and %d", op.Index, g, r, rev))
					}
					revs[g] = rev
				}
			}
			for _, g := range order {
				addGroup(op, sessGroupCall{Op: OpSessionPut, Group: g, Puts: part[g]}, sessGroupResult{})
			}
		case OpSessionDelete:
			var order []string
			ids := map[string][]string{}
			flags := map[string][]bool{}
			for j, id := range op.Input.ClientIDs {
				r := sessResult{}
				if op.Output != nil {
					r.Found = op.Output.Deleted[j]
				}
				add(op, sessCall{Op: OpSessionDelete, ID: id}, r)
				g := groupOf(id)
				if _, ok := ids[g]; !ok {
					order = append(order, g)
				}
				ids[g] = append(ids[g], id)
				flags[g] = append(flags[g], r.Found)
			}
			for _, g := range order {
				r := sessGroupResult{}
				if op.Output != nil {
					r.Deleted = flags[g]
				}
				addGroup(op, sessGroupCall{Op: OpSessionDelete, Group: g, IDs: ids[g]}, r)
			}
		case OpSessionGet:
			r := sessResult{}
			if s := op.Output.Session; s != nil {
				r.Found, r.Value = true, *s
			}
			add(op, sessCall{Op: OpSessionGet, ID: op.Input.ClientID}, r)
		case OpSessionList:
			returned := map[string]SessionValue{}
			last := ""
			for _, s := range op.Output.Sessions {
				returned[s.ClientID] = s
				last = s.ClientID
			}
			covered := map[string][]string{}
			for _, id := range universe {
				if id <= op.Input.StartAfter {
					continue
				}
				if op.Output.More && id > last {
					break
				}
				r := sessResult{}
				if v, ok := returned[id]; ok {
					r.Found, r.Value = true, v
				}
				add(op, sessCall{Op: OpSessionGet, ID: id, FromList: true}, r)
				covered[groupOf(id)] = append(covered[groupOf(id)], id)
			}
			for _, g := range slices.Sorted(mapKeys(covered)) {
				read := map[string]SessionValue{}
				for _, id := range covered[g] {
					if v, ok := returned[id]; ok {
						read[id] = v
					}
				}
				addGroup(op, sessGroupCall{Op: OpSessionList, Group: g, IDs: covered[g]}, sessGroupResult{Read: read})
			}
		}
	}
	// A read that names an acknowledged put must show the revision it
	// reported.
	for i := range ops {
		op := &ops[i]
		if op.Outcome != OutcomeOK || (op.Kind != OpSessionGet && op.Kind != OpSessionList) {
			continue
		}
		var seen []SessionValue
		if op.Output.Session != nil {
			seen = append(seen, *op.Output.Session)
		}
		seen = append(seen, op.Output.Sessions...)
		for _, s := range seen {
			if rev, ok := putRev[s.State]; ok && inUniverse[s.ClientID] && s.ModRevision != 0 && s.ModRevision != rev {
				problems = append(problems, fmt.Sprintf("broker op %d: session %s state %q has mod_revision %d, its put reported %d",
					op.Index, s.ClientID, s.State, s.ModRevision, rev))
			}
		}
	}
	for _, id := range universe {
		if len(byID[id]) > 0 {
			o, pruned := pruneSessions(byID[id])
			parts = append(parts, partition{Checker: CheckerSessions, Name: "client " + id, Ops: o, Pruned: pruned})
		}
	}
	for _, g := range slices.Sorted(mapKeys(byGroup)) {
		o, pruned := pruneSessionGroup(byGroup[g])
		parts = append(parts, partition{Checker: CheckerSessions, Name: "group " + g, Ops: o, Pruned: pruned})
	}
	return parts, problems
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// pruneSessions drops unknown puts whose state no read returned (see
// prune), except those a delete that found the session may need: a
// delete reporting "existed" observes existence without a value, and an
// unknown put called before that delete returned may be what it saw.
func pruneSessions(ops []porcupine.Operation) ([]porcupine.Operation, int) {
	observed := map[string]bool{}
	var existed []int64 // return times of deletes that found the session
	for _, op := range ops {
		c, r := op.Input.(sessCall), op.Output.(sessResult)
		if r.Found && c.Op == OpSessionGet {
			observed[r.Value.State] = true
		}
		if c.Op == OpSessionDelete && !r.Unknown && r.Found {
			existed = append(existed, op.Return)
		}
	}
	return withoutOps(ops, func(_ int, op porcupine.Operation) bool {
		c, r := op.Input.(sessCall), op.Output.(sessResult)
		return r.Unknown && c.Op == OpSessionPut && !observed[c.Value.State] &&
			!slices.ContainsFunc(existed, func(ret int64) bool { return ret > op.Call })
	})
}

// pruneSessionGroup does the same for the data-group model: an unknown put
// part goes when none of its states was read and no delete that found one
// of its sessions returned after it was called.
func pruneSessionGroup(ops []porcupine.Operation) ([]porcupine.Operation, int) {
	observed := map[string]bool{}
	existed := map[string][]int64{}
	for _, op := range ops {
		c, r := op.Input.(sessGroupCall), op.Output.(sessGroupResult)
		for _, v := range r.Read {
			observed[v.State] = true
		}
		if c.Op == OpSessionDelete && !r.Unknown {
			for j, id := range c.IDs {
				if r.Deleted[j] {
					existed[id] = append(existed[id], op.Return)
				}
			}
		}
	}
	return withoutOps(ops, func(_ int, op porcupine.Operation) bool {
		c, r := op.Input.(sessGroupCall), op.Output.(sessGroupResult)
		return r.Unknown && c.Op == OpSessionPut && !slices.ContainsFunc(c.Puts, func(v SessionValue) bool {
			return observed[v.State] || slices.ContainsFunc(existed[v.ClientID], func(ret int64) bool { return ret > op.Call })
		})
	})
}

// SessionsCheck is the result of the sessions checker with what it takes
// to draw its porcupine report.
type SessionsCheck struct {
	Result CheckResult
	info   porcupine.LinearizationInfo
}

// Visualize writes porcupine's HTML report of the sessions partitions.
func (s *SessionsCheck) Visualize(w io.Writer) error {
	return porcupine.Visualize(sessionsModel(), s.info, w)
}

// CheckSessions checks the session ops of a broker history: both models
// (bounded by timeout, 0: none; a partition undecided in time makes the
// verdict Unknown), the responses' shape and revisions, and that every
// client id the workload named got a successful final read. m is the
// number of data groups.
func CheckSessions(ops []BrokerOp, route DataRoute, timeout time.Duration) *SessionsCheck {
	start := time.Now()
	parts, problems := sessionPartitions(ops, route)
	verdicts, longest, info, stopped := checkPartitions(sessionsModel(), parts, timeout)
	r := CheckResult{Checker: CheckerSessions, Verdict: Valid}
	details := judgePartitions(&r, parts, verdicts, longest, "", timeout, stopped)
	for _, p := range problems {
		details = append(details, "bad response: "+p)
	}
	// Final reads: every client id the workload named.
	read := map[string]bool{}
	for i := range ops {
		op := &ops[i]
		if op.Final && op.Kind == OpSessionGet && op.Outcome == OutcomeOK {
			read[op.Input.ClientID] = true
		}
	}
	var missed []string
	for _, id := range sessionUniverse(ops, false) {
		if !read[id] {
			missed = append(missed, id)
		}
	}
	if len(missed) > 0 {
		r.Failing = append(r.Failing, "final reads")
		details = append(details, fmt.Sprintf("%d sessions without a successful final read (%s)", len(missed), strings.Join(firstN(missed, 5), ", ")))
	}
	switch {
	case len(r.Failing) > 0 || len(problems) > 0:
		r.Verdict = Invalid
	case len(r.Undecided) > 0:
		r.Verdict = Unknown
	}
	r.Details = strings.Join(details, "; ")
	r.Elapsed = time.Since(start)
	return &SessionsCheck{Result: r, info: info}
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(slices.Clone(s[:n]), fmt.Sprintf("… %d more", len(s)-n))
	}
	return s
}

// aloneFactor is how many times the check timeout the last pass of
// checkPartitions has in all, for every partition still undecided.
const aloneFactor = 4

// checkAll is porcupine's check of a whole history, and checkOne checks
// one partition's ops within timeout: Valid, Invalid, or Unknown when
// porcupine ran out of time. Variables so that a test can stand in for
// porcupine's clock.
var checkAll = porcupine.CheckOperationsVerbose

var checkOne = func(m porcupine.Model, ops []porcupine.Operation, timeout time.Duration) Verdict {
	switch porcupine.CheckOperationsTimeout(m, ops, timeout) {
	case porcupine.Ok:
		return Valid
	case porcupine.Illegal:
		return Invalid
	}
	return Unknown
}

// checkPartitions checks every partition in one porcupine call bounded by
// timeout; if that ran into the timeout, partitions without a complete
// linearization are checked again one by one (concurrently, each bounded
// by timeout), and then lastPass gives those still undecided one more
// chance. It returns a verdict and the longest linearizable prefix per
// partition, and whether the searches were stopped at the heap budget
// (see heapGuard; the partitions undecided then are Unknown).
// CheckLinearizability and CheckSessions both check with it.
func checkPartitions(m porcupine.Model, parts []partition, timeout time.Duration) ([]Verdict, []int, porcupine.LinearizationInfo, bool) {
	var history []porcupine.Operation
	for i := range parts {
		for _, op := range parts[i].Ops {
			op.Metadata.(*opMeta).Part = i
			history = append(history, op)
		}
	}
	guard := guardHeap(heapBudget)
	defer guard.close()
	m = guard.model(m)
	start := time.Now()
	res, info := checkAll(m, history, timeout)
	timedOut := res == porcupine.Unknown || timeout > 0 && time.Since(start) >= timeout
	stopped := guard.over.Load()
	verdicts := make([]Verdict, len(parts))
	longest := make([]int, len(parts))
	partials := info.PartialLinearizations()
	var recheck []int
	for i := range parts {
		complete := res == porcupine.Ok
		if i < len(partials) {
			for _, l := range partials[i] {
				longest[i] = max(longest[i], len(l))
				if len(l) == len(parts[i].Ops) {
					complete = true
				}
			}
		}
		switch {
		case complete:
			verdicts[i] = Valid
		case stopped:
			verdicts[i] = Unknown
		case timedOut:
			recheck = append(recheck, i)
		default:
			verdicts[i] = Invalid
		}
	}
	if len(recheck) > 0 {
		single := m
		single.Partition = nil
		var wg sync.WaitGroup
		for _, i := range recheck {
			wg.Go(func() { verdicts[i] = guard.verdict(checkOne(single, parts[i].Ops, timeout)) })
		}
		wg.Wait()
		lastPass(single, parts, verdicts, recheck, aloneFactor*timeout, guard)
	}
	return verdicts, longest, info, stopped
}

// lastPass checks the partitions of recheck still Unknown once more, alone
// and one after the other, smallest first, all of them within one budget:
// each gets what the ones before it left. A partition whose checker
// already has an Invalid partition is left Unknown: its checker's verdict
// is Invalid whatever the search would find.
//
// Porcupine's budget is wall-clock time, and the work a search needs does
// not change with the machine's load: on a loaded 2-core machine (tests of
// other packages, a CPU hog) a partition that needs 40 s of search got
// fewer than 60 s of CPU in the passes before, shared with every other
// partition, and came out undecided. Here it has the CPU the process has.
// The budget is shared so that a history with many undecided partitions
// (a planted bug's, say) costs one budget, not one per partition.
func lastPass(m porcupine.Model, parts []partition, verdicts []Verdict, recheck []int, budget time.Duration, guard *heapGuard) {
	invalid := map[string]bool{}
	var todo []int
	for i := range parts {
		if verdicts[i] == Invalid {
			invalid[parts[i].Checker] = true
		}
	}
	for _, i := range recheck {
		if verdicts[i] == Unknown && !invalid[parts[i].Checker] {
			todo = append(todo, i)
		}
	}
	slices.SortStableFunc(todo, func(a, b int) int { return len(parts[a].Ops) - len(parts[b].Ops) })
	deadline := time.Now().Add(budget)
	for _, i := range todo {
		left := time.Until(deadline)
		if left <= 0 || guard.over.Load() {
			return
		}
		verdicts[i] = guard.verdict(checkOne(m, parts[i].Ops, left))
	}
}
