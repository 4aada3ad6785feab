package verify

import (
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/metamq/meta/rpc/metapb"
)

// CheckerWatch names the watch checker.
const CheckerWatch = "watch"

// fenceMark is in the keys (KV) and names (resources) of the fences the
// run writes after the workload: a watcher that delivers a fence has
// delivered everything before it.
const fenceMark = "fence-"

// The watch checker reads watch.jsonl against the histories. For every
// watcher it splits the records into segments (start → end) and checks,
// per segment and group:
//
//   - order: event revisions never go down, no (revision, key) event comes
//     twice, no event comes at or below a revision a previous response
//     announced as delivered, and announced revisions never go down
//     (also across the client's resumes, each of which starts with a
//     progress notification);
//   - no gap: every change the histories prove committed in a watched
//     key, with its revision, appears at that revision: acknowledged
//     writes (the response header's revision for KV, each applied part's
//     for a multi-put, the returned resource's mod_revision or the
//     delete's revision for resources, a report's assignment) and every
//     value any response showed with its
//     mod_revision (so unknown writes that were observed count too), for
//     revisions the segment covers (after its start, up to the last
//     revision it announced);
//   - no invention: every PUT carries a value some put, compare-and-swap,
//     multi-put, txn or resource write of the history wrote (not one that
//     failed), with mod_revision equal to the event's revision; every
//     DELETE matches an acknowledged delete at that revision or an
//     unknown one; no write is delivered before it was called;
//   - agreement: two watchers never deliver different changes at one
//     (group, revision, key); two responses never claim one revision for
//     different changes, except that the puts of one KV batch op (a
//     multi-put's part, a txn: several keys, one revision, an event each)
//     share theirs; every other change has one of its own;
//   - final state: a KV watcher with one segment ends, at each final
//     read's revision, in the state the final read saw;
//   - catch-up: every watcher delivered the fences written after the
//     workload (KV: one per data group; resources: one resource);
//   - no give-up: the client's Watch returned only because the run
//     stopped it or with COMPACTED (after which the watcher starts a new
//     segment, checked on its own).
//
// Controller spaces (brokers, assignments) are decided by the controller,
// not written by the workload: they get the order, gap (from list reads
// and reports) and agreement checks only.

// wchange is a change the histories prove, or a watcher delivered.
type wchange struct {
	Group    string
	Revision uint64
	Type     string // put, delete
	Key      string
	Value    string
	// Source names where it came from, for the report.
	Source string
}

func (c wchange) String() string {
	if c.Type == "delete" {
		return fmt.Sprintf("delete %s", c.Key)
	}
	return fmt.Sprintf("put %s=%s", c.Key, c.Value)
}

func (c wchange) same(o wchange) bool {
	return c.Type == o.Type && c.Key == o.Key && c.Value == o.Value
}

type revKey struct {
	Group    string
	Revision uint64
}

// watchInputs are the histories as the watch checker needs them.
type watchInputs struct {
	ops   []Op
	bops  []BrokerOp
	route DataRoute
}

func (in *watchInputs) kvGroup(key string) string { return in.route.Group([]byte(key)) }

// expectations returns the changes the histories prove for a space, by
// (group, revision), and conflicts between them.
func (in *watchInputs) expectations(space string) (map[revKey][]wchange, []string) {
	exp := map[revKey][]wchange{}
	var problems []string
	var batch map[[2]string]int // (key, value) a batch op may put → its index
	add := func(c wchange) {
		if c.Revision == 0 {
			return
		}
		k := revKey{c.Group, c.Revision}
		for _, o := range exp[k] {
			if o.Key == c.Key && !o.same(c) {
				problems = append(problems, fmt.Sprintf("%s@%d: %s (%s) and %s (%s) claim one revision", c.Group, c.Revision, o, o.Source, c, c.Source))
				return
			}
			if o.same(c) {
				return
			}
		}
		if space == "kv" || space == "resources" {
			// One change per revision in these spaces, except the puts
			// of one KV batch op (multi-put part, txn).
			if len(exp[k]) > 0 && (space != "kv" || !oneBatch(batch, exp[k][0], c)) {
				o := exp[k][0]
				problems = append(problems, fmt.Sprintf("%s@%d: %s (%s) and %s (%s) claim one revision", c.Group, c.Revision, o, o.Source, c, c.Source))
				return
			}
		}
		exp[k] = append(exp[k], c)
	}
	switch space {
	case "kv":
		batch = map[[2]string]int{}
		for i := range in.ops {
			for w := range batchWrites(&in.ops[i]) {
				if !w.Delete {
					batch[[2]string{w.Key, w.Value}] = i
				}
			}
		}
		for i := range in.ops {
			op := &in.ops[i]
			if op.Outcome != OutcomeOK || op.Input.Stale {
				continue
			}
			src := fmt.Sprintf("op %d %s", op.Index, op.Kind)
			out := op.Output
			observe := func(kv *KV) {
				if kv != nil && kv.ModRevision > 0 {
					add(wchange{Group: in.kvGroup(kv.Key), Revision: kv.ModRevision, Type: "put", Key: kv.Key, Value: kv.Value, Source: src})
				}
			}
			for w := range batchWrites(op) {
				// A delete in a txn may have found nothing (no event):
				// only its puts are proven changes.
				if w.outcome == OutcomeOK && !w.Delete {
					add(wchange{Group: in.kvGroup(w.Key), Revision: w.revision, Type: "put", Key: w.Key, Value: w.Value, Source: src})
				}
			}
			switch op.Kind {
			case OpPut:
				add(wchange{Group: in.kvGroup(op.Input.Key), Revision: out.Revision, Type: "put", Key: op.Input.Key, Value: op.Input.Value, Source: src})
				observe(out.KV)
			case OpCAS:
				if out.Succeeded {
					add(wchange{Group: in.kvGroup(op.Input.Key), Revision: out.Revision, Type: "put", Key: op.Input.Key, Value: op.Input.Value, Source: src})
				}
				observe(out.KV)
			case OpDelete:
				if out.Deleted {
					add(wchange{Group: in.kvGroup(op.Input.Key), Revision: out.Revision, Type: "delete", Key: op.Input.Key, Source: src})
				}
				observe(out.KV)
			case OpGet:
				observe(out.KV)
			case OpList, OpMultiGet:
				for j := range out.KVs {
					observe(&out.KVs[j])
				}
			}
		}
	case "resources":
		for op, src := range okBrokerOps(in.bops) {
			switch op.Kind {
			case OpResourceCreate, OpResourceUpdate, OpResourceGet:
				if r := op.Output.Resource; r != nil {
					add(wchange{Group: metapb.MetadataGroup, Revision: r.ModRevision, Type: "put", Key: r.Name, Value: r.Marker, Source: src})
				}
			case OpResourceDelete:
				if op.Output.Resource != nil {
					add(wchange{Group: metapb.MetadataGroup, Revision: op.Output.Revision, Type: "delete", Key: op.Input.Resource.Name,
						Value: op.Output.Resource.Marker, Source: src})
				}
			}
		}
	case "brokers":
		for op, src := range okBrokerOps(in.bops) {
			if op.Kind != OpListBrokers {
				continue
			}
			for _, b := range op.Output.Brokers {
				add(wchange{Group: metapb.MetadataGroup, Revision: b.ModRevision, Type: "put", Key: b.ID,
					Value: brokerValue(b.Epoch, b.Status), Source: src})
			}
		}
	case "assignments":
		for op, src := range okBrokerOps(in.bops) {
			switch op.Kind {
			case OpListAssignments:
				for _, a := range op.Output.Assignments {
					add(wchange{Group: metapb.MetadataGroup, Revision: a.ModRevision, Type: "put", Key: a.Connector, Value: assignmentValue(a), Source: src})
				}
			case OpReport:
				if a := op.Output.Assignment; a != nil {
					add(wchange{Group: metapb.MetadataGroup, Revision: a.ModRevision, Type: "put", Key: a.Connector, Value: assignmentValue(*a), Source: src})
				}
			}
		}
	}
	return exp, problems
}

// writeOp is a write that may explain an event.
type writeOp struct {
	call     int64
	outcome  Outcome
	revision uint64 // acknowledged revision, 0 if unknown
	src      string
}

// writers returns, for a workload space, the writes by (key, value) for
// puts and by key for deletes.
func (in *watchInputs) writers(space string) (puts map[[2]string][]writeOp, dels map[string][]writeOp) {
	puts, dels = map[[2]string][]writeOp{}, map[string][]writeOp{}
	switch space {
	case "kv":
		for i := range in.ops {
			op := &in.ops[i]
			w := writeOp{call: op.Call, outcome: op.Outcome, src: fmt.Sprintf("op %d %s", op.Index, op.Kind)}
			if op.Output != nil {
				w.revision = op.Output.Revision
			}
			switch op.Kind {
			case OpPut:
				puts[[2]string{op.Input.Key, op.Input.Value}] = append(puts[[2]string{op.Input.Key, op.Input.Value}], w)
			case OpCAS:
				if op.Outcome == OutcomeOK && !op.Output.Succeeded {
					continue
				}
				puts[[2]string{op.Input.Key, op.Input.Value}] = append(puts[[2]string{op.Input.Key, op.Input.Value}], w)
			case OpDelete:
				if op.Outcome == OutcomeOK && !op.Output.Deleted {
					continue
				}
				dels[op.Input.Key] = append(dels[op.Input.Key], w)
			}
			for bw := range batchWrites(op) {
				part := w
				part.outcome, part.revision = bw.outcome, bw.revision
				if bw.Delete {
					dels[bw.Key] = append(dels[bw.Key], part)
				} else {
					puts[[2]string{bw.Key, bw.Value}] = append(puts[[2]string{bw.Key, bw.Value}], part)
				}
			}
		}
	case "resources":
		for i := range in.bops {
			op := &in.bops[i]
			w := writeOp{call: op.Call, outcome: op.Outcome, src: fmt.Sprintf("broker op %d %s", op.Index, op.Kind)}
			switch op.Kind {
			case OpResourceCreate, OpResourceUpdate:
				if op.Output != nil && op.Output.Resource != nil {
					w.revision = op.Output.Resource.ModRevision
				}
				k := [2]string{op.Input.Resource.Name, op.Input.Resource.Marker}
				puts[k] = append(puts[k], w)
			case OpResourceDelete:
				if op.Output != nil {
					if op.Output.Resource == nil {
						continue
					}
					w.revision = op.Output.Revision
				}
				dels[op.Input.Resource.Name] = append(dels[op.Input.Resource.Name], w)
			}
		}
	}
	return puts, dels
}

// segment is one call of the client's Watch by one watcher.
type segment struct {
	watcher int
	// endErr: Watch gave up by itself with this error (not COMPACTED,
	// not stopped by the run).
	endErr  string
	name    string
	space   string
	prefix  string // key prefix followed
	startAt int64
	// base[g]: the revision the segment starts after; hi[g]: the highest
	// revision it announced as delivered.
	base, hi map[string]uint64
	events   []recvEvent
	resumes  int
	problems []string
}

type recvEvent struct {
	WatchEvent
	at int64
}

// segments splits the records into segments and checks their order.
func segments(recs []WatchRecord) []*segment {
	var out []*segment
	open := map[int]*segment{}
	type pos struct {
		rev  uint64
		keys map[string]bool
	}
	last := map[*segment]map[string]*pos{}
	for _, r := range recs {
		switch r.Type {
		case WatchStart:
			s := &segment{watcher: r.Watcher, name: r.Name, space: r.Space, prefix: r.KeyPrefix, startAt: r.Time,
				base: map[string]uint64{}, hi: map[string]uint64{}}
			if s.name == "" {
				s.name = fmt.Sprintf("watcher %d", r.Watcher)
			}
			open[r.Watcher] = s
			last[s] = map[string]*pos{}
			out = append(out, s)
		case WatchEnd:
			if s := open[r.Watcher]; s != nil && r.Err != "" && !r.Compacted && !r.Stopped {
				s.endErr = r.Err
			}
			delete(open, r.Watcher)
		case WatchResponse:
			s := open[r.Watcher]
			if s == nil {
				continue
			}
			bad := func(f string, args ...any) {
				s.problems = append(s.problems, fmt.Sprintf("%s: ", s.name)+fmt.Sprintf(f, args...))
			}
			first := len(s.base) == 0 && len(s.events) == 0
			if first {
				for g, rev := range r.Revisions {
					s.base[g], s.hi[g] = rev, rev
				}
				for _, ev := range r.Events {
					if b, ok := s.base[ev.Group]; !ok || ev.Revision <= b {
						s.base[ev.Group] = ev.Revision - 1
					}
				}
			} else if r.Progress {
				s.resumes++
			}
			for _, ev := range r.Events {
				p := last[s][ev.Group]
				if p == nil {
					p = &pos{keys: map[string]bool{}}
					last[s][ev.Group] = p
				}
				switch {
				case !first && ev.Revision <= s.hi[ev.Group]:
					bad("%s@%d %s after revisions[%s]=%d had been announced (repeat or out of order)", ev.Group, ev.Revision, evString(ev), ev.Group, s.hi[ev.Group])
				case ev.Revision < p.rev:
					bad("%s@%d %s after %s@%d (out of order)", ev.Group, ev.Revision, evString(ev), ev.Group, p.rev)
				case ev.Revision == p.rev && p.keys[ev.Key]:
					bad("%s@%d %s delivered twice", ev.Group, ev.Revision, evString(ev))
				}
				if ev.Revision != p.rev {
					p.rev, p.keys = ev.Revision, map[string]bool{}
				}
				p.keys[ev.Key] = true
				s.events = append(s.events, recvEvent{WatchEvent: ev, at: r.Time})
			}
			for g, rev := range r.Revisions {
				if rev < s.hi[g] {
					bad("revisions[%s] went back from %d to %d", g, s.hi[g], rev)
				}
				s.hi[g] = max(s.hi[g], rev)
				if _, ok := s.base[g]; !ok {
					s.base[g] = rev
				}
			}
		}
	}
	return out
}

func evString(ev WatchEvent) string {
	if ev.Type == "delete" {
		return "delete " + ev.Key
	}
	return fmt.Sprintf("put %s=%s", ev.Key, ev.Value)
}

// CheckWatch checks the watch records against the KV history (ops), the
// broker history (bops) and the number of data groups m.
func CheckWatch(recs []WatchRecord, ops []Op, bops []BrokerOp, route DataRoute) CheckResult {
	start := time.Now()
	r := CheckResult{Checker: CheckerWatch, Verdict: Valid}
	in := &watchInputs{ops: ops, bops: bops, route: route}
	segs := segments(recs)
	var problems []string
	failing := map[string]bool{}
	fail := func(name, p string) {
		failing[name] = true
		problems = append(problems, p)
	}
	type spaceData struct {
		exp       map[revKey][]wchange
		puts      map[[2]string][]writeOp
		dels      map[string][]writeOp
		conflicts []string
	}
	spaces := map[string]*spaceData{}
	data := func(space string) *spaceData {
		if d, ok := spaces[space]; ok {
			return d
		}
		d := &spaceData{}
		d.exp, d.conflicts = in.expectations(space)
		d.puts, d.dels = in.writers(space)
		spaces[space] = d
		for _, c := range d.conflicts {
			fail("revisions", c)
		}
		return d
	}
	// Agreement across watchers: (group, revision, key) → change.
	type gk struct {
		Group    string
		Revision uint64
		Key      string
	}
	seen := map[gk]recvEvent{}
	seenBy := map[gk]string{}
	resumes, events, matched := 0, 0, 0
	for _, s := range segs {
		for _, p := range s.problems {
			fail(s.name, p)
		}
		if s.endErr != "" {
			// The client's Watch resumes by itself from everything but
			// bad input and COMPACTED: a watch that gives up on a valid
			// request breaks the contract (the watcher restarts it, and
			// what it missed in between is nobody's check).
			fail(s.name, fmt.Sprintf("%s: the client's Watch gave up: %s", s.name, s.endErr))
		}
		resumes += s.resumes
		events += len(s.events)
		d := data(s.space)
		follows := func(key string) bool { return strings.HasPrefix(key, s.prefix) }
		byRev := map[revKey][]recvEvent{}
		for _, ev := range s.events {
			if !follows(ev.Key) {
				continue
			}
			byRev[revKey{ev.Group, ev.Revision}] = append(byRev[revKey{ev.Group, ev.Revision}], ev)
			k := gk{ev.Group, ev.Revision, ev.Key}
			if o, ok := seen[k]; ok && (o.Type != ev.Type || o.Value != ev.Value) {
				fail(s.name, fmt.Sprintf("%s and %s disagree at %s@%d: %s vs %s", seenBy[k], s.name, ev.Group, ev.Revision, evString(o.WatchEvent), evString(ev.WatchEvent)))
			} else if !ok {
				seen[k], seenBy[k] = ev, s.name
			}
			if ev.Type == "put" && ev.ModRevision != 0 && ev.ModRevision != ev.Revision {
				fail(s.name, fmt.Sprintf("%s: %s@%d %s carries mod_revision %d", s.name, ev.Group, ev.Revision, evString(ev.WatchEvent), ev.ModRevision))
			}
			if s.space == "kv" || s.space == "resources" {
				if p := explain(d.puts, d.dels, ev); p != "" {
					fail(s.name, fmt.Sprintf("%s: %s@%d %s: %s", s.name, ev.Group, ev.Revision, evString(ev.WatchEvent), p))
				}
			}
		}
		// No gap over the revisions the segment covers.
		for k, cs := range d.exp {
			base, ok := s.base[k.Group]
			if !ok || k.Revision <= base || k.Revision > s.hi[k.Group] {
				continue
			}
			for _, c := range cs {
				if !follows(c.Key) {
					continue
				}
				got := byRev[k]
				if slices.ContainsFunc(got, func(ev recvEvent) bool {
					return ev.Key == c.Key && ev.Type == c.Type && (ev.Value == c.Value || c.Type == "delete")
				}) {
					matched++
				} else {
					what := "nothing"
					if len(got) > 0 {
						what = evString(got[0].WatchEvent)
					}
					fail(s.name, fmt.Sprintf("%s: gap at %s@%d: want %s (%s), got %s", s.name, k.Group, k.Revision, c, c.Source, what))
				}
			}
		}
	}
	// Final state and catch-up (KV and resources).
	for _, w := range watcherSegments(segs) {
		last := w[len(w)-1]
		if last.space == "kv" {
			for _, p := range finalState(in, w) {
				fail(last.name, p)
			}
		}
		for _, p := range caughtUp(in, last) {
			fail(last.name, p)
		}
	}
	r.Ops = events
	r.Partitions = len(segs)
	for name := range failing {
		r.Failing = append(r.Failing, name)
	}
	slices.Sort(r.Failing)
	if len(r.Failing) > 0 {
		r.Verdict = Invalid
	}
	details := []string{fmt.Sprintf("%d watchers, %d segments, %d events, %d resumes; %d proven changes found where expected",
		len(watcherSegments(segs)), len(segs), events, resumes, matched)}
	r.Details = detailsWith(details, problems)
	r.Elapsed = time.Since(start)
	return r
}

// explain says why no write of the history explains ev ("" when one
// does).
func explain(puts map[[2]string][]writeOp, dels map[string][]writeOp, ev recvEvent) string {
	var ws []writeOp
	if ev.Type == "put" {
		ws = puts[[2]string{ev.Key, ev.Value}]
	} else {
		ws = dels[ev.Key]
	}
	if len(ws) == 0 {
		return "no op of the history wrote it"
	}
	var why []string
	for _, w := range ws {
		switch {
		case w.call > ev.at:
			why = append(why, fmt.Sprintf("%s was called only after the event arrived", w.src))
		case w.outcome == OutcomeFail:
			why = append(why, fmt.Sprintf("%s failed", w.src))
		case w.outcome == OutcomeOK && w.revision != 0 && w.revision != ev.Revision:
			why = append(why, fmt.Sprintf("%s was acknowledged at revision %d", w.src, w.revision))
		default:
			return ""
		}
	}
	return strings.Join(why, ", ")
}

// watcherSegments groups segments by watcher, in order.
func watcherSegments(segs []*segment) [][]*segment {
	by := map[int][]*segment{}
	var ids []int
	for _, s := range segs {
		if _, ok := by[s.watcher]; !ok {
			ids = append(ids, s.watcher)
		}
		by[s.watcher] = append(by[s.watcher], s)
	}
	out := make([][]*segment, 0, len(ids))
	for _, id := range ids {
		out = append(out, by[id])
	}
	return out
}

// finalState: for a KV watcher that watched in one segment from before
// the workload's first op, each key's last event at or below a final
// read's revision must be what that read saw.
func finalState(in *watchInputs, w []*segment) []string {
	if len(w) != 1 {
		return nil
	}
	s := w[0]
	firstCall := int64(-1)
	for i := range in.ops {
		if !in.ops[i].Final && (firstCall < 0 || in.ops[i].Call < firstCall) {
			firstCall = in.ops[i].Call
		}
	}
	if firstCall >= 0 && s.startAt > firstCall {
		return nil
	}
	byKey := map[string][]recvEvent{}
	for _, ev := range s.events {
		byKey[ev.Key] = append(byKey[ev.Key], ev)
	}
	var problems []string
	for i := range in.ops {
		op := &in.ops[i]
		if !op.Final || op.Kind != OpGet || op.Outcome != OutcomeOK || !strings.HasPrefix(op.Input.Key, s.prefix) {
			continue
		}
		g := in.kvGroup(op.Input.Key)
		at := op.Output.Revision
		if at == 0 || s.hi[g] < at {
			continue
		}
		var lastEv *recvEvent
		for j := range byKey[op.Input.Key] {
			if ev := &byKey[op.Input.Key][j]; ev.Revision <= at {
				lastEv = ev
			}
		}
		if lastEv == nil {
			continue // never changed while watched: the gap check covers what reads saw
		}
		want := "∅"
		if op.Output.KV != nil {
			want = op.Output.KV.Value
		}
		got := "∅"
		if lastEv.Type == "put" {
			got = lastEv.Value
		}
		if got != want {
			problems = append(problems, fmt.Sprintf("%s: key %s at %s@%d: events end in %s, the final read (op %d) saw %s",
				s.name, op.Input.Key, g, at, got, op.Index, want))
		}
	}
	return problems
}

// caughtUp wants the watcher's last segment to hold every fence of its
// space.
func caughtUp(in *watchInputs, s *segment) []string {
	type fence struct {
		key, value string
		group      string
	}
	var fences []fence
	switch s.space {
	case "kv":
		for i := range in.ops {
			op := &in.ops[i]
			if op.Final && op.Kind == OpPut && op.Outcome == OutcomeOK && strings.Contains(op.Input.Key, fenceMark) &&
				strings.HasPrefix(op.Input.Key, s.prefix) {
				fences = append(fences, fence{op.Input.Key, op.Input.Value, in.kvGroup(op.Input.Key)})
			}
		}
	case "resources":
		for i := range in.bops {
			op := &in.bops[i]
			if op.Final && (op.Kind == OpResourceCreate || op.Kind == OpResourceUpdate) && op.Outcome == OutcomeOK &&
				strings.Contains(op.Input.Resource.Name, fenceMark) && strings.HasPrefix(op.Input.Resource.Name, s.prefix) {
				fences = append(fences, fence{op.Input.Resource.Name, op.Input.Resource.Marker, metapb.MetadataGroup})
			}
		}
	}
	var problems []string
	for _, f := range fences {
		if !slices.ContainsFunc(s.events, func(ev recvEvent) bool { return ev.Key == f.key && ev.Value == f.value }) {
			problems = append(problems, fmt.Sprintf("%s did not catch up: no event for the fence %s of %s (last delivered revision %d)",
				s.name, f.key, f.group, s.hi[f.group]))
		}
	}
	return problems
}

// fenceKey returns a key under prefix that routes to data group g of m.
func fenceKey(prefix, g string, m int) string {
	for i := 0; ; i++ {
		k := fmt.Sprintf("%s%s%s-%d", prefix, fenceMark, g, i)
		if m <= 1 || metapb.DataGroupFor([]byte(k), m) == g {
			return k
		}
	}
}

// oneBatch says whether two changes are puts one KV batch op may have
// made together (batch: (key, value) → the op; written values are unique
// and never empty, so a delete is in no batch).
func oneBatch(batch map[[2]string]int, a, b wchange) bool {
	i, ok := batch[[2]string{a.Key, a.Value}]
	j, ok2 := batch[[2]string{b.Key, b.Value}]
	return ok && ok2 && i == j
}

// batchWrite is one write a KV batch op (multi-put, txn) may have made,
// with the outcome and revision of the part that holds it.
type batchWrite struct {
	kvWrite
	outcome  Outcome
	revision uint64 // 0: not known
}

// batchWrites yields the writes a multi-put or txn may have made: a
// multi-put's puts with their part's outcome and revision (the op's
// outcome when no parts are recorded); the branch an ok txn ran, at its
// revision; both branches of an unknown or failed txn, with its outcome.
func batchWrites(op *Op) iter.Seq[batchWrite] {
	return func(yield func(batchWrite) bool) {
		switch op.Kind {
		case OpMultiPut:
			for _, p := range putParts(op) {
				for _, i := range p.Indexes {
					if i < 0 || i >= len(op.Input.Puts) {
						continue
					}
					put := op.Input.Puts[i]
					if !yield(batchWrite{kvWrite{Key: put.Key, Value: put.Value}, p.Outcome, p.Revision}) {
						return
					}
				}
			}
		case OpTxn:
			t := op.Input.Txn
			if t == nil {
				return
			}
			branches := [][]TxnWrite{t.Success, t.Failure}
			var rev uint64
			if op.Outcome == OutcomeOK {
				rev = op.Output.Revision
				branches = branches[:1]
				if !op.Output.Succeeded {
					branches = [][]TxnWrite{t.Failure}
				}
			}
			for _, b := range branches {
				for _, w := range b {
					if !yield(batchWrite{kvWrite(w), op.Outcome, rev}) {
						return
					}
				}
			}
		}
	}
}
