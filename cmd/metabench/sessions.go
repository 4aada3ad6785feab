package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/metamq/meta/rpc/metapb"
)

// errPage is returned by a sessions-list call whose page is not the one
// the loaded sessions imply: a session missing, one out of order, or a
// cursor that does not continue where the page ended.
var errPage = errors.New("metabench: sessions page differs from the loaded sessions")

// session is one MQTT session as metabench writes it.
type session struct {
	clientID      string
	brokerID      string
	connected     bool
	expirySeconds uint32
	state         []byte
}

// sessionPutter creates or replaces a batch of sessions in one call.
type sessionPutter interface {
	putSessions(ctx context.Context, sessions []session) error
}

// sessionPage is one page of a session listing: the client ids in order,
// whether more follow, and the cursor of the next page when they do.
type sessionPage struct {
	ids  []string
	more bool
	next string
}

// sessionLister lists up to limit sessions whose client ids sort after
// startAfter, in client id order.
type sessionLister interface {
	listSessions(ctx context.Context, startAfter string, limit int, stale bool) (sessionPage, error)
}

// sessionShape is what every session a run writes has in common; the
// client id comes from the key space and the state from the worker's
// value.
type sessionShape struct {
	ids           keySpace
	brokerID      string
	expirySeconds uint32
}

// fill writes sessions first..first+n-1 into w.sessions and returns them.
// Every session is connected (a connected session never expires; the
// expiry interval only starts when the client disconnects), held by the
// run's broker, and carries the worker's value as its state.
func (s sessionShape) fill(w *worker, first int64, n int) []session {
	w.sessions = w.sessions[:0]
	for i := range int64(n) {
		w.key = s.ids.key(w.key, first+i)
		w.sessions = append(w.sessions, session{
			clientID:      string(w.key),
			brokerID:      s.brokerID,
			connected:     true,
			expirySeconds: s.expirySeconds,
			state:         w.value,
		})
	}
	return w.sessions
}

// batchBytes is how the server counts a batch of n such sessions against
// metapb.MaxBatchBytes (client id, broker id, state and 16 bytes each).
func (s sessionShape) batchBytes(n, stateSize int) int {
	return n * (s.ids.size + len(s.brokerID) + stateSize + 16)
}

// maxBatch is the largest batch, at most want, that the server accepts
// for sessions with states of stateSize bytes.
func (s sessionShape) maxBatch(want, stateSize int) int {
	per := s.batchBytes(1, stateSize)
	return max(1, min(want, metapb.MaxBatchEntries, metapb.MaxBatchBytes/per))
}

// sessionsWorkload writes new sessions: call s writes sessions
// s*batch .. s*batch+n-1 of its key space, so every client id is written
// exactly once in a run.
type sessionsWorkload struct {
	writeOnly
	shape sessionShape
	batch int
}

func (s *sessionsWorkload) unit() string       { return "sessions" }
func (s *sessionsWorkload) check(c conn) error { return supports[sessionPutter](c, "sessions") }

func (s *sessionsWorkload) call(ctx context.Context, c conn, w *worker, seq int64, n int) error {
	return c.(sessionPutter).putSessions(ctx, s.shape.fill(w, seq*int64(s.batch), n))
}

// sessionsListWorkload pages through n sessions of a key space that an
// earlier `metabench sessions` run (or prepare, when load is set) wrote:
// call s lists the page of up to batch sessions that starts after
// session s*batch-1 (after the bare prefix for the first page), and
// checks that it holds exactly the sessions the key space puts there and
// that its cursor continues after its last one. Because client ids are
// zero-padded, the page boundaries are known without listing the pages
// before, so several workers can page through one listing concurrently;
// with --clients 1 the pages come one after the other, as a broker
// re-listing its sessions would see them.
type sessionsListWorkload struct {
	reads
	shape sessionShape
	batch int
}

func (l *sessionsListWorkload) unit() string { return "sessions" }
func (l *sessionsListWorkload) check(c conn) error {
	return supportsReads[sessionLister, sessionPutter](c, "sessions-list", l.load, "sessions (to load sessions)")
}

// prepare writes the n sessions once, in batches as large as the server
// accepts up to 1000, and fails on the first error: listing sessions that
// were never loaded would measure nothing.
func (l *sessionsListWorkload) prepare(ctx context.Context, conns []conn, env prepareEnv) error {
	batch := int64(l.shape.maxBatch(1000, env.valueSize))
	return l.loadAll(ctx, conns, env, "sessions", (l.n+batch-1)/batch, func(ctx context.Context, c conn, w *worker, i int64) (int64, error) {
		first := i * batch
		n := int(min(batch, l.n-first))
		if err := c.(sessionPutter).putSessions(ctx, l.shape.fill(w, first, n)); err != nil {
			return 0, fmt.Errorf("load sessions %d..%d: %w", first, first+int64(n)-1, err)
		}
		return int64(n), nil
	})
}

func (l *sessionsListWorkload) call(ctx context.Context, c conn, w *worker, seq int64, n int) error {
	first := seq * int64(l.batch)
	start := l.shape.ids.prefix
	if first > 0 {
		w.key = l.shape.ids.key(w.key, first-1)
		start = string(w.key)
	}
	page, err := c.(sessionLister).listSessions(ctx, start, n, l.stale)
	if err != nil {
		return err
	}
	return l.checkPage(w, page, first, n, first+int64(n) < l.n)
}

// checkPage compares page with sessions first..first+n-1; notLast says
// pages of the key space follow, so the listing must say there are more.
// Sessions after the key space (other runs' or other prefixes') may
// follow on the last page and are ignored.
func (l *sessionsListWorkload) checkPage(w *worker, page sessionPage, first int64, n int, notLast bool) error {
	fail := func(format string, args ...any) error {
		if l.stale {
			// A lagging replica may not have every session yet.
			return errStaleMiss
		}
		return fmt.Errorf("%w: page of sessions %d..%d: %s", errPage, first, first+int64(n)-1, fmt.Sprintf(format, args...))
	}
	if len(page.ids) < n {
		return fail("got %d sessions, want %d", len(page.ids), n)
	}
	for i := range n {
		w.key = l.shape.ids.key(w.key, first+int64(i))
		if page.ids[i] != string(w.key) {
			return fail("session %d: got client id %q, want %q", i, page.ids[i], w.key)
		}
	}
	if notLast && !page.more {
		return fail("got more=false, want more sessions after %q", page.ids[n-1])
	}
	if page.more && page.next != page.ids[len(page.ids)-1] {
		return fail("got next_start_after %q, want the page's last client id %q", page.next, page.ids[len(page.ids)-1])
	}
	return nil
}

// parseExpiry checks an expiry interval in seconds (MQTT 5: 32 bits,
// 4294967295 meaning never).
func parseExpiry(v int64) (uint32, error) {
	if v < 0 || v > 1<<32-1 {
		return 0, fmt.Errorf("--expiry-seconds: %d, want 0 to %s", v, strconv.FormatUint(1<<32-1, 10))
	}
	return uint32(v), nil
}
