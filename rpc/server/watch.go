package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// watchService streams changes from the groups' change logs.
//
// The stream contract, per group in scope (KV and WILLS: every data group;
// RESOURCES, BROKERS and ASSIGNMENTS: metadata-0):
//
//   - The first response is a progress notification whose revisions give
//     each group's start point minus one (start_revisions[g], or the
//     revision of a linearizable read + 1 for a group not listed), so a
//     client can resume without a gap even if nothing ever changes.
//   - Events come in log order, each once. revisions[g] = R means every
//     change of g up to and including R has been delivered (in this or an
//     earlier response); resuming with start_revisions[g] = R + 1 neither
//     misses nor repeats an event. A response normally holds whole
//     revisions; only a revision with more events than one scan reads
//     (watchChunk) or than one response carries (watchMaxBytes) is split
//     over several responses, and while it is, revisions[g] stays below
//     it: a client that resumes in the middle of such a revision receives
//     its first events again, in the same order, and must skip as many as
//     it already has (rpc/client's Watch does).
//   - While nothing matching happens, a progress notification (no events,
//     progress = true) carries the revisions every progress interval. A
//     group's revision may then be the one its local replica had just
//     before a scan that found nothing more.
//   - prefix selects KV keys, resource names (of resource_kind, or of
//     every kind), will client ids and broker ids by prefix; for
//     ASSIGNMENTS it is one broker id, and an assignment that moves away
//     from that broker is delivered as a DELETE.
//   - A KV or wills watch follows splits: a data group a split adds joins
//     the stream (its revisions in responses from then on) from its first
//     revision, which follows its parent's at the fence, and its events
//     come only after the parent's up to the fence, so each moved key's
//     revisions keep rising. A resume that names the parent but not the
//     child starts the child the same way. A start revision for a data
//     group the serving node does not know yet fails the stream with
//     ROUTE_AHEAD (retry), not INVALID_ARGUMENT.
//   - A start below a group's compacted revision fails the stream with
//     FailedPrecondition, reason COMPACTED, metadata group and
//     compact_revision.
//
// Events are read from the local replica of the node serving the stream,
// so a watch served by a lagging follower delivers late but in order and
// without gaps. Each watch is one goroutine (the stream's handler): it
// reads at most one chunk per group, sends it (blocking under gRPC flow
// control, which bounds buffering), and waits on the replicas' Changed
// channels when there is nothing new.
type watchService struct {
	metapb.UnimplementedWatchServer
	s *Server
}

const (
	// watchChunk is how many change-log events one scan reads.
	watchChunk = 256
	// watchMaxBytes is the encoded size at which a response is cut.
	watchMaxBytes = 4 << 20
)

// watchFilter selects and converts change-log events for one request.
type watchFilter struct {
	space  metapb.WatchSpace
	prefix []byte
	kind   metapb.ResourceKind
	prevKV bool
}

// watchGroup is one group's position in a watch.
type watchGroup struct {
	name string
	m    state.Reader
	// cur is the next change-log position to read; N > 0 only in the
	// middle of a revision split over responses.
	cur state.Cursor
	// delivered is the highest revision whose every event has been sent.
	delivered uint64
	// remote, for a group this node does not host (m is nil then),
	// delivers the answers of a watch of that group alone on a node that
	// hosts it; its error ends this watch (the client resumes).
	remote <-chan remoteWatch
	// gate, while set, holds the group's events back (see watcher.open).
	gate *watchGate
}

type remoteWatch struct {
	resp *metapb.WatchResponse
	err  error
}

func (s *Server) watchScope(space metapb.WatchSpace) ([]string, error) {
	switch space {
	case metapb.WatchSpace_WATCH_SPACE_KV, metapb.WatchSpace_WATCH_SPACE_WILLS:
		return s.dataGroups()
	}
	return []string{metapb.MetadataGroup}, nil
}

func (s *Server) checkWatch(req *metapb.WatchRequest) (*watchFilter, []string, time.Duration, error) {
	if _, m := s.node.GroupCounts(); m == 0 {
		// The node has not started: it does not know its groups yet, so
		// it cannot judge start_revisions. Definite; try another node.
		return nil, nil, 0, coded(metapb.ReasonNoLeader, nil, "node is starting")
	}
	if _, ok := metapb.WatchSpace_name[int32(req.Space)]; !ok {
		return nil, nil, 0, invalid("space", "unknown space %d", req.Space)
	}
	maxPrefix := map[metapb.WatchSpace]int{
		metapb.WatchSpace_WATCH_SPACE_KV:          metapb.MaxKeyBytes,
		metapb.WatchSpace_WATCH_SPACE_RESOURCES:   metapb.MaxNameBytes,
		metapb.WatchSpace_WATCH_SPACE_WILLS:       metapb.MaxClientIDBytes,
		metapb.WatchSpace_WATCH_SPACE_BROKERS:     metapb.MaxBrokerIDBytes,
		metapb.WatchSpace_WATCH_SPACE_ASSIGNMENTS: metapb.MaxBrokerIDBytes,
	}[req.Space]
	if err := checkMaxBytes("prefix", req.Prefix, maxPrefix); err != nil {
		return nil, nil, 0, err
	}
	if req.ResourceKind != metapb.ResourceKind_RESOURCE_KIND_UNSPECIFIED {
		if req.Space != metapb.WatchSpace_WATCH_SPACE_RESOURCES {
			return nil, nil, 0, invalid("resource_kind", "only for space WATCH_SPACE_RESOURCES")
		}
		if err := checkKind("resource_kind", req.ResourceKind); err != nil {
			return nil, nil, 0, err
		}
	}
	interval := time.Duration(metapb.DefaultProgressIntervalMs) * time.Millisecond
	if req.ProgressIntervalMs != 0 {
		if req.ProgressIntervalMs < metapb.MinProgressIntervalMs {
			return nil, nil, 0, invalid("progress_interval_ms", "%d, at least %d", req.ProgressIntervalMs, metapb.MinProgressIntervalMs)
		}
		interval = time.Duration(req.ProgressIntervalMs) * time.Millisecond
	}
	groups, err := s.watchScope(req.Space)
	if err != nil {
		return nil, nil, 0, err
	}
	for g := range req.StartRevisions {
		if slices.Contains(groups, g) {
			continue
		}
		if len(groups) > 0 && sameKind(g, groups[0]) {
			// A group of the scope's kind this node's map does not name
			// yet: one a split made, that the client learned of on a node
			// further on (its record may be here already, still creating).
			return nil, nil, 0, coded(metapb.ReasonRouteAhead, map[string]string{metapb.MetaGroup: g},
				fmt.Sprintf("%q is not in this node's map yet (%v): try again, or another node", g, groups))
		}
		return nil, nil, 0, invalid(fmt.Sprintf("start_revisions[%s]", g), "%q is not a group this watch covers (%v)", g, groups)
	}
	return &watchFilter{space: req.Space, prefix: req.Prefix, kind: req.ResourceKind, prevKV: req.PrevKv}, groups, interval, nil
}

// DefaultMaxWatchesPerConn is how many watches one client connection may
// hold open at once unless the node is told otherwise.
const DefaultMaxWatchesPerConn = 1000

// connWatches counts open watches per client connection.
type connWatches struct {
	max  int
	mu   sync.Mutex
	open map[string]int // remote address -> open watches
}

// acquire counts one more watch on ctx's connection, or refuses it when
// the connection holds max already; release undoes it. Forwarded watches
// are not counted.
func (c *connWatches) acquire(ctx context.Context) (release func(), err error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil || forwarded(ctx) {
		return func() {}, nil
	}
	key := p.Addr.String()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[key] >= c.max {
		return nil, metapb.NewError(metapb.ReasonOverloaded, nil,
			"this connection holds %d watches, at most %d: end one, or watch on another connection", c.open[key], c.max)
	}
	c.open[key]++
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.open[key]--; c.open[key] <= 0 {
			delete(c.open, key)
		}
	}, nil
}

// Watch streams changes; see watchService.
func (ws *watchService) Watch(req *metapb.WatchRequest, stream grpc.ServerStreamingServer[metapb.WatchResponse]) error {
	s := ws.s
	ctx := stream.Context()
	f, names, interval, err := s.checkWatch(req)
	if err != nil {
		return err
	}
	release, err := s.watches.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	if names, err = s.groupsFor(ctx, names); err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the remote group watches
	w := &watcher{s: s, f: f, req: req, stream: stream}
	for _, g := range names {
		if err := w.open(wctx, g, req.StartRevisions); err != nil {
			return err
		}
	}
	if err := w.send(nil, true); err != nil {
		return err
	}
	return w.run(wctx, interval)
}

// open adds group g to the watch, from start[g] when given. A group a
// split made (its record names a parent and the parent's revision at the
// fence, where its own revisions begin) is watched from its first
// revision when its parent is watched from a given point (a resume, or a
// split the watch follows: follow), and its events wait until the
// parent's up to the fence are delivered (gate), so that each moved key's
// revisions keep rising across the handoff. Any other group not given
// starts after everything acknowledged so far (a linearizable read).
func (w *watcher) open(ctx context.Context, g string, start map[string]uint64) error {
	s := w.s
	from, given := start[g]
	var gate *watchGate
	if rec := s.directoryGroup(g); rec != nil && rec.Parent != "" {
		if _, parentGiven := start[rec.Parent]; parentGiven && !given {
			from, given = rec.BaseRevision+1, true
		}
		if given && from <= rec.BaseRevision+1 {
			gate = &watchGate{group: rec.Parent, revision: rec.BaseRevision}
		}
	}
	if given {
		from = max(from, 1) // revisions start at 1
	}
	if wg, err := s.remoteWatch(ctx, g, w.req, from); err != nil {
		return err
	} else if wg != nil {
		wg.gate = gate
		w.groups = append(w.groups, wg)
		return nil
	}
	if !given {
		// Only changes after everything acknowledged so far.
		m, err := s.read(ctx, g, metapb.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE)
		if err != nil {
			return err
		}
		from = m.Revision() + 1
	}
	m, err := s.read(ctx, g, metapb.ReadConsistency_READ_CONSISTENCY_STALE)
	if err != nil {
		return err
	}
	c, err := m.CompactRevision()
	if err != nil {
		return s.statusOf(err, false)
	}
	if from < c {
		return compactedError(g, from, c)
	}
	w.groups = append(w.groups, &watchGroup{name: g, m: m, cur: state.Cursor{Revision: from}, delivered: from - 1, gate: gate})
	return nil
}

// watchGate holds a group's events back until group has delivered up to
// revision (a split's parent, up to its fence).
type watchGate struct {
	group    string
	revision uint64
}

// held reports whether g's events wait for its gate.
func (w *watcher) held(g *watchGroup) bool {
	if g.gate == nil {
		return false
	}
	for _, p := range w.groups {
		if p.name == g.gate.group && p.delivered < g.gate.revision {
			return true
		}
	}
	g.gate = nil // the parent has passed the fence, or is not watched
	return false
}

// follow adds the groups a split brought into the watch's scope (KV and
// wills watches cover every data group): each from its first revision,
// after its parent's events up to the fence. A scope that cannot be read
// now is read again at the next change.
func (w *watcher) follow(ctx context.Context) error {
	names, err := w.s.watchScope(w.f.space)
	if err != nil {
		return nil
	}
	for _, g := range names {
		if slices.ContainsFunc(w.groups, func(x *watchGroup) bool { return x.name == g }) {
			continue
		}
		if err := w.open(ctx, g, w.revisionsFrom()); err != nil {
			return err
		}
	}
	return nil
}

// revisionsFrom is where the watch stands: each group's next revision.
func (w *watcher) revisionsFrom() map[string]uint64 {
	out := make(map[string]uint64, len(w.groups))
	for _, g := range w.groups {
		out[g.name] = g.delivered + 1
	}
	return out
}

// directoryGroup is g's record in the directory this node has seen, or nil.
func (s *Server) directoryGroup(g string) *logpb.GroupRecord {
	if d := s.node.Directory(); d != nil {
		return d.Group(g)
	}
	return nil
}

// sameKind reports whether two group names are of one kind.
func sameKind(a, b string) bool {
	ka, errA := metapb.GroupKind(a)
	kb, errB := metapb.GroupKind(b)
	return errA == nil && errB == nil && ka == kb
}

// watcher is the state of one watch, owned by the stream's goroutine.
type watcher struct {
	s      *Server
	f      *watchFilter
	req    *metapb.WatchRequest
	groups []*watchGroup
	stream grpc.ServerStreamingServer[metapb.WatchResponse]
}

func (w *watcher) revisions() map[string]uint64 {
	out := make(map[string]uint64, len(w.groups))
	for _, g := range w.groups {
		out[g.name] = g.delivered
	}
	return out
}

func (w *watcher) send(events []*metapb.WatchEvent, progress bool) error {
	return w.stream.Send(&metapb.WatchResponse{Events: events, Revisions: w.revisions(), Progress: progress})
}

// remoteWatch watches g, a group this node does not host, on a node that
// hosts it: the same request, restricted to g, from revision from (0: not
// given). It returns nil when this node hosts g (or the call is already
// restricted: the client follows the redirect).
func (s *Server) remoteWatch(ctx context.Context, g string, req *metapb.WatchRequest, from uint64) (*watchGroup, error) {
	_, err := s.read(ctx, g, metapb.ReadConsistency_READ_CONSISTENCY_STALE)
	var r redirect
	if err == nil || !errors.As(err, &r) || r.ForwardTo() == "" || restrictedTo(ctx) != "" {
		return nil, nil
	}
	sub := proto.CloneOf(req)
	sub.StartRevisions = nil
	if from > 0 {
		sub.StartRevisions = map[string]uint64{g: from}
	}
	// The first answer says where the watch starts, or why it cannot.
	stream, first, err := s.fwd.watch(ctx, r.ForwardTo(), g, sub)
	if err != nil {
		return nil, err
	}
	ch := make(chan remoteWatch, 1)
	go func() {
		resp, err := first, error(nil)
		for {
			select {
			case ch <- remoteWatch{resp, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
			resp, err = stream.Recv()
		}
	}()
	return &watchGroup{name: g, delivered: first.Revisions[g], remote: ch}, nil
}

func (w *watcher) run(ctx context.Context, interval time.Duration) error {
	progress := time.NewTimer(interval)
	defer progress.Stop()
	// A watch ends when its node begins to stop (an orderly gRPC stop
	// waits for every stream to end).
	stopping := w.s.node.Stopping()
	// KV and wills watches follow the data groups a split adds (not one
	// restricted to a group: another node's watch of that group alone).
	follows := (w.f.space == metapb.WatchSpace_WATCH_SPACE_KV || w.f.space == metapb.WatchSpace_WATCH_SPACE_WILLS) &&
		restrictedTo(ctx) == ""
	// The select cases: ctx, progress, stopping, the directory, then one
	// channel per group (none for a group whose gate holds it).
	const fixed = 4
	var cases []reflect.SelectCase
	var dirChanged <-chan struct{}
	for {
		if follows && dirChanged == nil {
			// Taken before reading the scope: a change after it wakes us.
			dirChanged = w.s.node.DirectoryChanged()
			if err := w.follow(ctx); err != nil {
				return err
			}
		}
		cases = slices.Grow(cases[:0], fixed+len(w.groups))[:fixed+len(w.groups)]
		again, sent := false, false
		for i, g := range w.groups {
			cases[fixed+i] = reflect.SelectCase{Dir: reflect.SelectRecv}
			if w.held(g) {
				continue // a zero Chan: the case is ignored
			}
			if g.remote != nil {
				cases[fixed+i].Chan = reflect.ValueOf(g.remote)
				continue
			}
			// Take the channel before reading: an apply after this point
			// closes it, so the wait below cannot miss it.
			cases[fixed+i].Chan = reflect.ValueOf(g.m.Changed())
			full, n, err := w.scan(g)
			if err != nil {
				return err
			}
			again = again || full
			sent = sent || n > 0
		}
		if sent {
			progress.Reset(interval)
		}
		if again {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue
		}
		cases[0] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())}
		cases[1] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(progress.C)}
		cases[2] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(stopping)}
		cases[3] = reflect.SelectCase{Dir: reflect.SelectRecv}
		if dirChanged != nil {
			cases[3].Chan = reflect.ValueOf(dirChanged)
		}
		chosen, v, _ := reflect.Select(cases)
		if chosen >= fixed && w.groups[chosen-fixed].remote != nil {
			g, rw := w.groups[chosen-fixed], v.Interface().(remoteWatch)
			if rw.err != nil {
				return rw.err
			}
			if rev, ok := rw.resp.Revisions[g.name]; ok {
				g.delivered = max(g.delivered, rev)
			}
			if len(rw.resp.Events) > 0 {
				if err := w.send(rw.resp.Events, false); err != nil {
					return err
				}
				progress.Reset(interval)
			}
			continue
		}
		switch chosen {
		case 0:
			return ctx.Err()
		case 1:
			if err := w.send(nil, true); err != nil {
				return err
			}
			progress.Reset(interval)
		case 2:
			return errShuttingDown
		case 3:
			dirChanged = nil // read the scope again
		}
	}
}

// errShuttingDown ends watches on a node that is stopping.
var errShuttingDown = coded(metapb.ReasonShuttingDown, nil, "server: node shutting down")

// scan reads one chunk of a group's change log from its cursor, sends
// what matches, and advances the group. full reports that the chunk was
// full (more may follow at once); n is the number of events sent.
func (w *watcher) scan(g *watchGroup) (full bool, n int, err error) {
	// Every revision up to r0 is wholly in the log before the read below
	// (a revision's events commit in one batch with it).
	r0 := g.m.Revision()
	recs, next, err := g.m.Events(g.cur, watchChunk)
	if errors.Is(err, state.ErrCompacted) {
		c, cerr := g.m.CompactRevision()
		if cerr != nil {
			return false, 0, w.s.statusOf(cerr, false)
		}
		return false, 0, compactedError(g.name, g.cur.Revision, c)
	}
	if err != nil {
		return false, 0, w.s.statusOf(err, false)
	}
	full = len(recs) == watchChunk
	var delivered uint64
	var cur state.Cursor
	switch {
	case len(recs) < watchChunk:
		// Everything from the cursor up to at least r0.
		delivered = max(g.cur.Revision-1, r0)
		if len(recs) > 0 {
			delivered = max(delivered, recs[len(recs)-1].Revision)
		}
		cur = state.Cursor{Revision: delivered + 1}
	case recs[0].Revision != recs[len(recs)-1].Revision:
		// Hold back the last revision, which may go on past the chunk.
		last := recs[len(recs)-1].Revision
		k := len(recs) - 1
		for k > 0 && recs[k-1].Revision == last {
			k--
		}
		recs = recs[:k]
		delivered, cur = last-1, state.Cursor{Revision: last}
	default:
		// One revision fills the chunk: send it in parts. The revisions
		// before it have no events.
		delivered, cur = recs[0].Revision-1, next
	}
	var events []*metapb.WatchEvent
	size := 0
	// Flush in pieces of at most watchMaxBytes, cut at revision
	// boundaries when there is one in the piece.
	flush := func(upTo uint64) error {
		if len(events) == 0 {
			return nil
		}
		g.delivered = max(g.delivered, upTo)
		err := w.send(events, false)
		n += len(events)
		events, size = nil, 0
		return err
	}
	for _, rec := range recs {
		ev, err := w.f.convert(g.name, rec)
		if err != nil {
			return false, n, w.s.statusOf(err, false)
		}
		if ev == nil {
			continue
		}
		sz := proto.Size(ev)
		if size+sz > watchMaxBytes && len(events) > 0 {
			// Events before this one: whole revisions below rec's.
			if err := flush(rec.Revision - 1); err != nil {
				return false, n, err
			}
		}
		events = append(events, ev)
		size += sz
	}
	if err := flush(delivered); err != nil {
		return false, n, err
	}
	g.delivered = max(g.delivered, delivered)
	g.cur = cur
	return full, n, nil
}

// convert turns a logged change into a public event; nil when the filter
// does not select it.
func (f *watchFilter) convert(group string, rec state.EventRecord) (*metapb.WatchEvent, error) {
	ev := rec.Event
	out := &metapb.WatchEvent{Group: group, Revision: rec.Revision}
	if ev.Deleted {
		out.Type = metapb.WatchEvent_DELETE
	}
	// state is the stored encoding to show: after the change, or for a
	// delete the last state.
	state := ev.Value
	if ev.Deleted {
		state = ev.Prev
	}
	switch f.space {
	case metapb.WatchSpace_WATCH_SPACE_KV:
		if ev.Space != logpb.Space_SPACE_KV || !bytes.HasPrefix(ev.Key, f.prefix) {
			return nil, nil
		}
		if ev.Deleted {
			out.Kv = &metapb.KeyValue{Key: ev.Key, ModRevision: rec.Revision}
		} else {
			kv, err := decodeKV(ev.Key, ev.Value)
			if err != nil {
				return nil, err
			}
			out.Kv = kv
		}
		if f.prevKV && len(ev.Prev) > 0 {
			kv, err := decodeKV(ev.Key, ev.Prev)
			if err != nil {
				return nil, err
			}
			out.PrevKv = kv
		}
	case metapb.WatchSpace_WATCH_SPACE_RESOURCES:
		// The key is the kind's byte, then the name.
		selected := ev.Space == logpb.Space_SPACE_RESOURCE && len(ev.Key) >= 1 &&
			(f.kind == metapb.ResourceKind_RESOURCE_KIND_UNSPECIFIED || int32(ev.Key[0]) == int32(f.kind)) &&
			bytes.HasPrefix(ev.Key[1:], f.prefix)
		return decodeInto(out, selected, state, toResource, &out.Resource)
	case metapb.WatchSpace_WATCH_SPACE_WILLS:
		selected := ev.Space == logpb.Space_SPACE_WILL && bytes.HasPrefix(ev.Key, f.prefix)
		return decodeInto(out, selected, state, decodeWill, &out.Will)
	case metapb.WatchSpace_WATCH_SPACE_BROKERS:
		selected := ev.Space == logpb.Space_SPACE_BROKER && bytes.HasPrefix(ev.Key, f.prefix)
		return decodeInto(out, selected, state, decodeBroker, &out.Broker)
	case metapb.WatchSpace_WATCH_SPACE_ASSIGNMENTS:
		return f.assignment(out, rec)
	default:
		return nil, nil
	}
	return out, nil
}

// decodeInto completes out, the event of a change the filter selected,
// with the change's state decoded into the field into; nil when the filter
// did not select it.
func decodeInto[T any](out *metapb.WatchEvent, selected bool, state []byte, decode func([]byte) (T, error), into *T) (*metapb.WatchEvent, error) {
	if !selected {
		return nil, nil
	}
	v, err := decode(state)
	if err != nil {
		return nil, err
	}
	*into = v
	return out, nil
}

// decodeBroker decodes a stored broker (an empty encoding is the empty
// broker).
func decodeBroker(raw []byte) (*metapb.BrokerState, error) {
	b, err := unmarshalStored[logpb.Broker](raw, "broker")
	if err != nil {
		return nil, err
	}
	return toBroker(b), nil
}

// assignment selects an assignment change. With a prefix (a broker id),
// only that broker's assignments: an assignment that moves away from it
// is delivered as a DELETE carrying the state it had with the broker.
func (f *watchFilter) assignment(out *metapb.WatchEvent, rec state.EventRecord) (*metapb.WatchEvent, error) {
	ev := rec.Event
	if ev.Space != logpb.Space_SPACE_ASSIGNMENT {
		return nil, nil
	}
	decode := func(raw []byte) (*logpb.ConnectorAssignment, error) {
		return decodeStored(raw, "assignment", func(as *logpb.ConnectorAssignment) (*logpb.ConnectorAssignment, error) { return as, nil })
	}
	cur, err := decode(ev.Value)
	if err != nil {
		return nil, err
	}
	prev, err := decode(ev.Prev)
	if err != nil {
		return nil, err
	}
	broker := string(f.prefix)
	switch {
	case cur == nil && prev == nil:
		return nil, nil
	case broker == "" && cur != nil:
		out.Assignment = toAssignment(cur)
	case broker == "":
		out.Type, out.Assignment = metapb.WatchEvent_DELETE, toAssignment(prev)
	case cur != nil && cur.BrokerId == broker:
		out.Type, out.Assignment = metapb.WatchEvent_PUT, toAssignment(cur)
	case prev != nil && prev.BrokerId == broker:
		out.Type, out.Assignment = metapb.WatchEvent_DELETE, toAssignment(prev)
	default:
		return nil, nil
	}
	return out, nil
}

func decodeKV(key, raw []byte) (*metapb.KeyValue, error) {
	kv, err := unmarshalStored[logpb.KV](raw, "key")
	if err != nil {
		return nil, err
	}
	return toKV(key, kv), nil
}
