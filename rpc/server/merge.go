package server

import (
	"cmp"
	"context"
	"slices"
	"sort"

	"golang.org/x/sync/errgroup"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// dataGroups lists the cluster's data groups.
func (s *Server) dataGroups() []string {
	_, m := s.node.GroupCounts()
	out := make([]string, max(m, 1))
	for i := range out {
		out[i] = metapb.DataGroup(i)
	}
	return out
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

// readEach runs fn on every data group's state machine, each read with the
// given consistency, concurrently; pages come back in group order.
func readEach[T any](ctx context.Context, s *Server, c metapb.ReadConsistency,
	fn func(g string, m state.Reader) ([]T, bool, error)) (pages [][]T, more bool, err error) {
	groups := s.dataGroups()
	pages = make([][]T, len(groups))
	mores := make([]bool, len(groups))
	eg, ectx := errgroup.WithContext(ctx)
	for i, g := range groups {
		eg.Go(func() error {
			m, err := s.read(ectx, g, c)
			if err != nil {
				return err
			}
			p, gm, err := fn(g, m)
			if err != nil {
				return s.statusOf(err, false)
			}
			pages[i], mores[i] = p, gm
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, false, err
	}
	return pages, slices.Contains(mores, true), nil
}

// split groups request entries by the data group that owns their routing
// key; the groups come back sorted, each with the entries' indexes in
// request order.
func (s *Server) split(n int, routingKey func(i int) []byte) (groups []string, parts map[string][]int) {
	parts = map[string][]int{}
	for i := 0; i < n; i++ {
		g := s.dataGroup(routingKey(i))
		parts[g] = append(parts[g], i)
	}
	for g := range parts {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	return groups, parts
}

// proposeEach proposes one op per group, concurrently, and waits for all
// of them: each part is atomic on its own, so one part failing must not
// cancel the others. errs[i] is groups[i]'s node error; results[i] its
// result when errs[i] is nil. Turn errs into the call's error with
// batchError.
func (s *Server) proposeEach(ctx context.Context, groups []string, op func(i int, g string) *logpb.Op) (results []*logpb.Result, errs []error) {
	results = make([]*logpb.Result, len(groups))
	errs = make([]error, len(groups))
	var eg errgroup.Group
	for i, g := range groups {
		eg.Go(func() error {
			results[i], errs[i] = s.node.Propose(ctx, g, op(i, g))
			return nil
		})
	}
	_ = eg.Wait()
	return results, errs
}
