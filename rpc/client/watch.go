package client

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/metapb"
)

// Watch watches changes and calls fn with every response that carries
// events or is a progress notification, in order, from this goroutine.
//
// It survives the loss of the node serving it: on a transient failure it
// opens the watch again on another endpoint with start_revisions set to
// the last revision delivered per group + 1, so fn sees no gap and no
// duplicate (events of a revision the server had split over responses and
// that fn already saw are skipped on resume). It returns when ctx ends
// (ctx.Err()), when fn returns an error (that error), or when the watch
// cannot continue: bad input, or COMPACTED (see Compacted: re-list, then
// watch from the listing's revision + 1).
//
// A stream that stays silent for silentAfter progress intervals (the
// server sends a progress notification at least every interval) is taken
// for a node that can no longer be heard (blackholed, stalled): the watch
// resumes elsewhere the same way.
//
// The first response of every stream is a progress notification giving
// the start point per group; a watch whose first stream fails before that
// response starts, on its next stream, from the then current revision of
// the groups not in req.StartRevisions (nothing was delivered before).
func (c *Client) Watch(ctx context.Context, req *metapb.WatchRequest, fn func(*metapb.WatchResponse) error) error {
	st := &watchState{req: req, last: map[string]uint64{}, partRev: map[string]uint64{},
		partN: map[string]int{}, seen: map[string]int{}}
	for attempt := 0; ; attempt++ {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return ErrClosed
		}
		ok, err := c.watchOnce(ctx, c.next(), st, fn)
		var fe *fnError
		switch {
		case errors.As(err, &fe):
			return fe.err
		case ctx.Err() != nil:
			return ctx.Err()
		case !transientWatch(err):
			return err
		}
		if ok {
			attempt = 0 // the stream worked for a while: start backing off afresh
		}
		c.log.Debug("watch interrupted; resuming", "err", err, "from", st.last)
		if err := sleepBackoff(ctx, attempt); err != nil {
			return err
		}
	}
}

// fnError carries the callback's error out of watchOnce.
type fnError struct{ err error }

func (e *fnError) Error() string { return e.err.Error() }

// transientWatch reports whether a watch that failed with err may resume
// elsewhere.
func transientWatch(err error) bool {
	if errors.Is(err, io.EOF) {
		return true
	}
	st, ok := status.FromError(err)
	if !ok {
		return true
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.NotFound, codes.PermissionDenied,
		codes.Unauthenticated, codes.Unimplemented, codes.OutOfRange:
		return false
	}
	return true
}

// watchOnce runs one stream until it fails; received reports whether it
// delivered anything.
func (c *Client) watchOnce(ctx context.Context, ep *endpoint, st *watchState, fn func(*metapb.WatchResponse) error) (received bool, err error) {
	if !c.ready(ctx, ep) {
		return false, status.Errorf(codes.Unavailable, "client: %s: connection not ready", ep.addr)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// silent fires when nothing arrived for a while; it is stopped while
	// fn runs (a slow callback is not a silent node).
	limit := max(silentAfter*progressInterval(st.req), minSilence)
	var silent atomic.Bool
	timer := time.AfterFunc(limit, func() { silent.Store(true); cancel() })
	defer timer.Stop()
	stream, err := metapb.NewWatchClient(ep.conn).Watch(ctx, st.resume())
	for err == nil {
		var resp *metapb.WatchResponse
		if resp, err = stream.Recv(); err != nil {
			break
		}
		timer.Stop()
		received = true
		if out := st.filter(resp); out != nil {
			if err := fn(out); err != nil {
				return received, &fnError{err: err}
			}
		}
		timer.Reset(limit)
	}
	if silent.Load() {
		ep.downUntil.Store(time.Now().Add(limit).UnixNano())
		return received, status.Errorf(codes.Unavailable, "client: watch on %s: nothing heard for %v", ep.addr, limit)
	}
	return received, err
}

// silentAfter is how many progress intervals a watch stream may stay
// silent before the client gives up on it, and minSilence the least
// silence that counts (a short progress interval on a loaded machine
// must not make a watch leave every node in turn before it delivers).
const (
	silentAfter = 3
	minSilence  = 5 * time.Second
)

// progressInterval is the interval the server sends progress
// notifications at for req (rpc/metapb/watch.proto's default and minimum).
func progressInterval(req *metapb.WatchRequest) time.Duration {
	ms := req.GetProgressIntervalMs()
	if ms == 0 {
		ms = 5000
	}
	return time.Duration(max(ms, 100)) * time.Millisecond
}

// watchState is what a resumable watch remembers between streams.
type watchState struct {
	req *metapb.WatchRequest
	// last is, per group, the highest revision delivered in full.
	last map[string]uint64
	// partRev is, per group, the revision of the newest events handed to
	// fn (above last while the server splits it over responses), and
	// partN how many of its events fn has seen; seen counts its events
	// received on the current stream.
	partRev map[string]uint64
	partN   map[string]int
	seen    map[string]int
}

// request is the request of the next stream: the original one, resumed
// after what was delivered.
func (st *watchState) request() *metapb.WatchRequest {
	r := proto.Clone(st.req).(*metapb.WatchRequest)
	if r.StartRevisions == nil {
		r.StartRevisions = map[string]uint64{}
	}
	for g, rev := range st.last {
		r.StartRevisions[g] = rev + 1
	}
	return r
}

// resume starts counting a new stream's repeats and returns its request.
func (st *watchState) resume() *metapb.WatchRequest {
	clear(st.seen)
	return st.request()
}

// filter drops what fn already saw and records progress; nil when nothing
// is left to hand over.
func (st *watchState) filter(resp *metapb.WatchResponse) *metapb.WatchResponse {
	var keep []*metapb.WatchEvent
	for _, ev := range resp.Events {
		g := ev.Group
		switch {
		case ev.Revision <= st.last[g]:
			continue
		case ev.Revision == st.partRev[g]:
			st.seen[g]++
			if st.seen[g] <= st.partN[g] {
				continue // delivered on an earlier stream
			}
			st.partN[g]++
		case ev.Revision > st.partRev[g]:
			st.partRev[g], st.partN[g], st.seen[g] = ev.Revision, 1, 1
		default:
			continue // older than what fn has: the server repeated it
		}
		keep = append(keep, ev)
	}
	for g, rev := range resp.Revisions {
		st.last[g] = max(st.last[g], rev)
	}
	if len(keep) == 0 && !resp.Progress {
		return nil
	}
	return &metapb.WatchResponse{Events: keep, Revisions: resp.Revisions, Progress: resp.Progress}
}
