package rocks

import "sync"

// gate lets calls into C memory run concurrently while guaranteeing that a
// closer frees that memory only once none is in progress, and that no call
// starts afterwards. It is a counter rather than a sync.RWMutex because calls
// nest (a Scan callback may call Get on the same DB): with an RWMutex a
// pending Close would block the nested read lock and deadlock; here the
// nested call simply fails with ErrClosed once Close has begun.
type gate struct {
	err    error // what enter returns once closed
	mu     sync.Mutex
	idle   *sync.Cond // signalled when active drops to zero; uses mu
	closed bool       // guarded by mu
	active int        // guarded by mu: calls between enter and leave
}

// newGate returns an open gate whose enter returns ErrClosed once closed.
func newGate() *gate { return newGateErr(ErrClosed) }

// newGateErr returns an open gate whose enter returns err once closed.
func newGateErr(err error) *gate {
	g := &gate{err: err}
	g.idle = sync.NewCond(&g.mu)
	return g
}

// enter admits one call, or returns the gate's error (ErrClosed unless
// made with newGateErr). Every successful enter must be paired with one
// leave.
func (g *gate) enter() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return g.err
	}
	g.active++
	return nil
}

func (g *gate) leave() {
	g.mu.Lock()
	g.active--
	if g.active == 0 && g.closed {
		g.idle.Broadcast()
	}
	g.mu.Unlock()
}

// close refuses new calls and waits until the admitted ones have left. It
// reports whether this call was the one that closed the gate; it waits for
// idleness either way, so every caller returns only once no call is in
// progress.
func (g *gate) close() (first bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	first = !g.closed
	g.closed = true
	for g.active > 0 {
		g.idle.Wait()
	}
	return first
}

func (g *gate) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// check returns the gate's error once it is closed, nil before.
func (g *gate) check() error {
	if g.isClosed() {
		return g.err
	}
	return nil
}
