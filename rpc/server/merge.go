package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// dataGroups lists the cluster's data groups.
// A node that has not started does not know them yet (it would read
// data-0 alone, and answer a listing without the other groups' keys): it
// refuses as a node without a directory does.
func (s *Server) dataGroups() ([]string, error) { return s.dataGroupsIn(s.node.Router()) }

// dataGroupsIn is dataGroups by the map r (the node's, read once by the
// caller).
func (s *Server) dataGroupsIn(r *metapb.Router) ([]string, error) {
	_, m := s.node.GroupCounts()
	if m < 1 {
		return nil, errNoRoutes
	}
	if r != nil && r.Data != nil {
		// Ranges: the groups the map names (a split's new group once it
		// is published).
		var out []string
		for _, rg := range r.Data {
			if !slices.Contains(out, rg.Group) {
				out = append(out, rg.Group)
			}
		}
		slices.Sort(out)
		return out, nil
	}
	out := make([]string, m)
	for i := range out {
		out[i] = metapb.DataGroup(i)
	}
	return out, nil
}

// mergeSorted merges pages that are each sorted by key and keeps the first
// limit items; cut reports whether items were left out. Each page holds up
// to limit items after the same start, so the first limit items of the
// merge are exactly the first limit items of the union.
func mergeSorted[T any](pages [][]T, limit int, key func(T) string) (out []T, cut bool) {
	for _, p := range pages {
		out = append(out, p...)
	}
	slices.SortStableFunc(out, func(a, b T) int { return cmp.Compare(key(a), key(b)) })
	if len(out) > limit {
		return out[:limit], true
	}
	return out, false
}

// listPage reads one page of a listing from every data group (readEach):
// each group this node hosts by read, its items converted by conv, each
// other one by forwarding req (items picks them from the answer, of type
// Resp). The pages merge by key (mergeSorted); more says whether items
// follow the page, and next is then the last item's key (the next page's
// start).
func listPage[S, T any, Resp interface {
	proto.Message
	GetMore() bool
}](ctx context.Context, s *Server, c metapb.ReadConsistency, req proto.Message, limit int,
	read func(g string, m state.Reader) ([]S, bool, error), conv func(S) T,
	items func(Resp) []T, key func(T) string) (page []T, more bool, next string, err error) {
	part := func(resp proto.Message) ([]T, bool) {
		r := resp.(Resp)
		return items(r), r.GetMore()
	}
	pages, more, err := readEach(ctx, s, c, req, func(g string, m state.Reader) ([]T, bool, error) {
		items, more, err := read(g, m)
		if err != nil {
			return nil, false, err
		}
		out := make([]T, len(items))
		for i, it := range items {
			out[i] = conv(it)
		}
		return out, more, nil
	}, part)
	if err != nil {
		return nil, false, "", err
	}
	page, cut := mergeSorted(pages, limit, key)
	more = more || cut
	if more && len(page) > 0 {
		next = key(page[len(page)-1])
	}
	return page, more, next, nil
}

// readEach reads every data group (or only the one an incoming call is
// restricted to) with the given consistency, concurrently: each group this
// node hosts locally (fn), each other one by forwarding the call, req,
// restricted to that group, to a node that hosts it (part picks the items,
// and whether more follow, from its answer). Items are the call's own
// answer items, so local and forwarded pages merge alike; pages come back
// in group order.
func readEach[T any](ctx context.Context, s *Server, c metapb.ReadConsistency, req proto.Message,
	fn func(g string, m state.Reader) ([]T, bool, error), part func(resp proto.Message) ([]T, bool)) (pages [][]T, more bool, err error) {
	// One map gives both the groups read and the ranges each must own.
	r := s.node.Router()
	groups, err := s.dataGroupsIn(r)
	if err == nil {
		groups, err = s.groupsFor(ctx, groups)
	}
	if err != nil {
		return nil, false, err
	}
	cover := listCover(ctx, r)
	pages = make([][]T, len(groups))
	mores := make([]bool, len(groups))
	eg, ectx := errgroup.WithContext(ctx)
	for i, g := range groups {
		eg.Go(func() error {
			return s.inGroup(withListRanges(ectx, cover[g]), g, c, req,
				func(m state.Reader) error {
					before := ownedRanges(m)
					p, gm, err := fn(g, m)
					if err != nil {
						return s.statusOf(err, false)
					}
					if err := checkCover(g, cover, before, ownedRanges(m)); err != nil {
						return s.statusOf(err, false)
					}
					pages[i], mores[i] = p, gm
					return nil
				},
				func(resp proto.Message) error {
					pages[i], mores[i] = part(resp)
					return nil
				})
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, false, err
	}
	return pages, slices.Contains(mores, true), nil
}

// A listing merges one page from each data group its map names. After a
// split, a node's map can lag behind the groups' logs: the parent has
// dropped the range while the node's map does not name the new group yet,
// and the listing would leave the range's keys out without an error. So
// each group's page counts only if the ranges the group owned while it
// was read (its own record, the same before and after the read) are
// exactly the ranges the map gives it: the map tiles the hash space, so the pages then cover every key
// once. Otherwise the listing is refused as RANGE_MOVING, which clients
// retry after a backoff while the map catches up. A group read on
// another node is checked there, against the ranges this node's map gives
// it (mdListRanges).

// listCover returns the ranges each data group must own for a listing,
// by group, encoded by encodeRanges, as the map r gives them; nil when
// the cluster routes by count. A listing forwarded for one group takes
// its caller's ranges.
func listCover(ctx context.Context, r *metapb.Router) map[string]string {
	if g := restrictedTo(ctx); g != "" {
		md, _ := metadata.FromIncomingContext(ctx)
		if v := md.Get(mdListRanges); len(v) > 0 {
			return map[string]string{g: v[0]}
		}
	}
	if r == nil || r.Data == nil {
		return nil
	}
	by := map[string][]*logpb.HashRange{}
	for _, rg := range r.Data {
		by[rg.Group] = append(by[rg.Group], &logpb.HashRange{Lo: rg.Lo, Hi: rg.Hi, Version: rg.Version})
	}
	out := map[string]string{}
	for g, rs := range by {
		out[g] = encodeRanges(rs)
	}
	return out
}

// encodeRanges writes ranges as "lo-hi@version" items, sorted, comma
// separated.
func encodeRanges(rs []*logpb.HashRange) string {
	items := make([]string, len(rs))
	for i, r := range rs {
		items[i] = fmt.Sprintf("%x-%x@%d", r.Lo, r.Hi, r.Version)
	}
	slices.Sort(items)
	return strings.Join(items, ",")
}

// owned is the ranges a group owns by its own record (encodeRanges), if
// its state tells them (known).
type owned struct {
	ranges string
	known  bool
}

// ownedRanges returns the ranges m's group owns by its own record.
func ownedRanges(m state.Reader) owned {
	o, ok := m.(interface{ Ownership() *logpb.Ownership })
	if !ok {
		return owned{}
	}
	rec := o.Ownership()
	if rec == nil || rec.Legacy {
		return owned{} // owns what routing by count gives it
	}
	if len(rec.Moving) > 0 || rec.Ingesting {
		// A split under way (the read itself refuses then): no
		// ranges that a map could give it.
		return owned{ranges: "-", known: true}
	}
	return owned{ranges: encodeRanges(rec.Owned), known: true}
}

// checkCover refuses group g's page (RANGE_MOVING) unless g owned the
// same ranges before and after its read and they are the ranges cover
// gives it. A cluster that routes by count (cover nil) and a state that
// does not tell its ranges pass.
func checkCover(g string, cover map[string]string, before, after owned) error {
	if cover == nil || !before.known || !after.known {
		return nil
	}
	if before != after || after.ranges != cover[g] {
		return &state.OwnershipError{Group: g, Moving: true}
	}
	return nil
}

// listRangesKey is the context key of the ranges a forwarded listing
// carries (withListRanges).
type listRangesKey struct{}

// withListRanges records in ctx the ranges a group's part of a listing
// must find, for the forwarder to pass on.
func withListRanges(ctx context.Context, ranges string) context.Context {
	if ranges == "" {
		return ctx
	}
	return context.WithValue(ctx, listRangesKey{}, ranges)
}

// listRangesOf returns the ranges withListRanges recorded, or "".
func listRangesOf(ctx context.Context) string {
	r, _ := ctx.Value(listRangesKey{}).(string)
	return r
}

// inGroup runs local on group g's state when this node hosts it; when it
// does not, it forwards req (the call, or the part of it about g),
// restricted to g, to a node that does, and hands the answer to remote.
func (s *Server) inGroup(ctx context.Context, g string, c metapb.ReadConsistency, req proto.Message,
	local func(state.Reader) error, remote func(proto.Message) error) error {
	m, err := s.read(ctx, g, c)
	if err == nil {
		return local(m)
	}
	// A call already restricted to one group was forwarded for that group
	// alone: it never goes further (the caller follows the redirect).
	var r redirect
	if !errors.As(err, &r) || r.ForwardTo() == "" || restrictedTo(ctx) != "" {
		return err
	}
	method, ok := grpc.Method(ctx)
	if !ok {
		return err
	}
	resp, ferr := s.fwd.invoke(ctx, r.ForwardTo(), method, req, g)
	if ferr != nil {
		return ferr
	}
	return remote(resp)
}

// groupsFor narrows groups to the one an incoming call is restricted to
// (a node forwarding the part of a call about one group), if any.
func (s *Server) groupsFor(ctx context.Context, groups []string) ([]string, error) {
	g := restrictedTo(ctx)
	if g == "" {
		return groups, nil
	}
	if !slices.Contains(groups, g) {
		return nil, invalidArgument("", fmt.Sprintf("the call is restricted to %q, which it does not read", g))
	}
	return []string{g}, nil
}

// split groups request entries by the data group that owns their routing
// key; the groups come back sorted, each with the entries' indexes in
// request order.
func (s *Server) split(n int, routingKey func(i int) []byte) (groups []string, parts map[string][]int, err error) {
	r, err := s.router()
	if err != nil {
		return nil, nil, err
	}
	parts = map[string][]int{}
	for i := 0; i < n; i++ {
		g := r.DataGroup(routingKey(i))
		parts[g] = append(parts[g], i)
	}
	for g := range parts {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	return groups, parts, nil
}

// proposeEach proposes one op per group, concurrently, and waits for all
// of them: each part is atomic on its own, so one part failing must not
// cancel the others. errs[i] is groups[i]'s node error (or its routing
// refusal); results[i] its result when errs[i] is nil.
func (s *Server) proposeEach(ctx context.Context, groups []string, op func(i int, g string) *logpb.Op) (results []*logpb.Result, errs []error) {
	results = make([]*logpb.Result, len(groups))
	errs = make([]error, len(groups))
	var eg errgroup.Group
	for i, g := range groups {
		eg.Go(func() error {
			results[i], errs[i] = s.node.Propose(ctx, g, op(i, g))
			if errs[i] == nil {
				errs[i] = s.routingResult(g, results[i])
			}
			return nil
		})
	}
	_ = eg.Wait()
	return results, errs
}

// part is one group's part of a batch write: the request's entries idx
// (in request order) proposed to group as one op, atomic on its own; res
// is its result when err is nil.
type part struct {
	group string
	idx   []int
	res   *logpb.Result
	err   error
}

// rerouteFor bounds how long a batch write's parts refused for routing
// are routed again (at most three quarters of the call's time left).
const rerouteFor = 10 * time.Second

// proposeParts proposes a batch write of n entries split by the group
// that owns each entry's routing key (groupOf, by the node's router): one
// op per group (op makes it of the entries idx), concurrently, each part
// atomic on its own, so one part failing does not cancel the others. A
// call whose client declared another route is refused whole first
// (checkRoute). A part a group's own log refused for routing (WRONG_GROUP:
// this node's map was behind the group's log; RANGE_MOVING: a split
// between its fence and its acquire) was refused whole, definitely: its
// entries are split again by the node's map, once the map changes or
// after a pause, and proposed again, until they apply or rerouteFor (or
// most of the call's time) is spent, so a batch spanning a split is
// routed to the groups that own its keys now, never half refused. A part
// whose outcome is unknown is never proposed again. The parts come back
// sorted by group, then by their first entry; turn their errors into the
// call's with batchError.
func (s *Server) proposeParts(ctx context.Context, n int, groupOf func(r *metapb.Router, i int) string,
	op func(g string, idx []int) *logpb.Op) ([]*part, error) {
	r, err := s.router()
	if err != nil {
		return nil, err
	}
	pending := make([]int, n)
	for i := range pending {
		pending[i] = i
	}
	parts := splitBy(r, pending, groupOf)
	if err := s.checkRoute(ctx, groupsOf(parts)...); err != nil {
		return nil, err
	}
	stop := time.Now().Add(rerouteFor)
	if dl, ok := ctx.Deadline(); ok {
		stop = minTime(stop, time.Now().Add(time.Until(dl)*3/4))
	}
	var done []*part
	for attempt := 0; ; attempt++ {
		changed := s.node.DirectoryChanged()
		groups := groupsOf(parts)
		results, errs := s.proposeEach(ctx, groups, func(i int, g string) *logpb.Op { return op(g, parts[i].idx) })
		for i, p := range parts {
			p.res, p.err = results[i], errs[i]
		}
		pending = nil
		var refused []*part
		for _, p := range parts {
			switch metapb.ReasonOf(p.err) {
			case metapb.ReasonWrongGroup, metapb.ReasonRangeMoving:
				refused = append(refused, p)
				pending = append(pending, p.idx...)
			default:
				done = append(done, p)
			}
		}
		if len(refused) == 0 {
			break
		}
		pause := time.Duration(10<<min(attempt, 4)) * time.Millisecond
		if time.Now().Add(pause).After(stop) {
			done = append(done, refused...)
			break
		}
		select {
		case <-ctx.Done():
			done = append(done, refused...)
		case <-changed:
		case <-time.After(pause):
		}
		if ctx.Err() != nil {
			break
		}
		if r, err = s.router(); err != nil {
			done = append(done, refused...)
			break
		}
		slices.Sort(pending)
		parts = splitBy(r, pending, groupOf)
	}
	slices.SortFunc(done, func(a, b *part) int { return cmp.Or(cmp.Compare(a.group, b.group), cmp.Compare(a.idx[0], b.idx[0])) })
	return done, nil
}

// splitBy splits the entries idx by group, each part's entries in the
// order of idx, the parts in the order their groups first appear.
func splitBy(r *metapb.Router, idx []int, groupOf func(r *metapb.Router, i int) string) []*part {
	var parts []*part
	at := map[string]*part{}
	for _, i := range idx {
		g := groupOf(r, i)
		p := at[g]
		if p == nil {
			p = &part{group: g}
			at[g] = p
			parts = append(parts, p)
		}
		p.idx = append(p.idx, i)
	}
	return parts
}

// groupsOf is the group of each part, in order.
func groupsOf(parts []*part) []string {
	groups := make([]string, len(parts))
	for i, p := range parts {
		groups[i] = p.group
	}
	return groups
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// partErrs is the node errors of parts, in order.
func partErrs(parts []*part) []error {
	errs := make([]error, len(parts))
	for i, p := range parts {
		errs[i] = p.err
	}
	return errs
}

// partGroups counts the distinct groups of parts.
func partGroups(parts []*part) int {
	seen := map[string]bool{}
	for _, p := range parts {
		seen[p.group] = true
	}
	return len(seen)
}

// routingResult turns a result refused by the group's ownership into its
// routing error (nil for any other result).
func (s *Server) routingResult(group string, res *logpb.Result) error {
	switch res.GetCode() {
	case logpb.Code_CODE_WRONG_GROUP, logpb.Code_CODE_RANGE_MOVING:
		return s.routingError(group, res.Code == logpb.Code_CODE_RANGE_MOVING)
	}
	return nil
}
