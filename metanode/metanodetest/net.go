package metanodetest

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Client is the pseudo-node id of the test's clients in the fault table.
const Client = "client"

// link is a directed pair of node ids.
type link struct{ from, to string }

// linkState is what happens to bytes on one directed link.
type linkState struct {
	// blocked holds bytes (writes wait, read data is held) until the link
	// heals: a partition, as TCP sees one.
	blocked bool
	// delay is added before every write.
	delay time.Duration
	// drop is the probability that a write kills its connection (the
	// message and everything in flight with it is lost; gRPC reconnects).
	drop float64
}

// Net is the fault layer. Every connection a node (or a test client)
// makes goes through Dial, which wraps it so that each write consults the
// state of the link from the dialer to the peer and each read the state
// of the link from the peer back. Faults take effect at once on existing
// connections.
type Net struct {
	mu      sync.Mutex        // guards the fields below
	addrs   map[string]string // address -> node id
	links   map[link]linkState
	changed chan struct{} // closed and replaced on every change
	conns   map[*faultConn]struct{}
	rng     *rand.Rand
}

// NewNet returns a fault layer with every link healthy.
func NewNet(seed uint64) *Net {
	return &Net{addrs: map[string]string{}, links: map[link]linkState{}, changed: make(chan struct{}),
		conns: map[*faultConn]struct{}{}, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Register tells the layer which node listens on addr.
func (n *Net) Register(id, addr string) {
	n.mu.Lock()
	n.addrs[addr] = id
	n.mu.Unlock()
}

func (n *Net) notify() {
	close(n.changed)
	n.changed = make(chan struct{})
}

func (n *Net) set(from, to string, f func(*linkState)) {
	st := n.links[link{from, to}]
	f(&st)
	if st == (linkState{}) {
		delete(n.links, link{from, to})
	} else {
		n.links[link{from, to}] = st
	}
}

// Block holds all traffic from -> to (one direction).
func (n *Net) Block(from, to string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.set(from, to, func(s *linkState) { s.blocked = true })
	n.notify()
}

// Delay adds d before every write from -> to, and drops with probability p.
func (n *Net) Delay(from, to string, d time.Duration, p float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.set(from, to, func(s *linkState) { s.delay, s.drop = d, p })
	n.notify()
}

// Partition blocks every link between different sides; nodes not listed
// keep their links.
func (n *Net) Partition(sides ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, a := range sides {
		for j, b := range sides {
			if i == j {
				continue
			}
			for _, x := range a {
				for _, y := range b {
					n.set(x, y, func(s *linkState) { s.blocked = true })
				}
			}
		}
	}
	n.notify()
}

// Heal restores every link.
func (n *Net) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.links = map[link]linkState{}
	n.notify()
}

// HealNode restores every link to and from id.
func (n *Net) HealNode(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for l := range n.links {
		if l.from == id || l.to == id {
			delete(n.links, l)
		}
	}
	n.notify()
}

func (n *Net) state(from, to string) (linkState, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.links[link{from, to}], n.changed
}

func (n *Net) roll(p float64) bool {
	if p <= 0 {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rng.Float64() < p
}

// Dialer returns the dial function for connections made by node from.
func (n *Net) Dialer(from string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		n.mu.Lock()
		to := n.addrs[addr]
		n.mu.Unlock()
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		fc := &faultConn{Conn: c, net: n, local: from, remote: to, closed: make(chan struct{})}
		n.mu.Lock()
		n.conns[fc] = struct{}{}
		n.mu.Unlock()
		return fc, nil
	}
}

var errDropped = errors.New("metanodetest: connection dropped by fault layer")

type faultConn struct {
	net.Conn
	net           *Net
	local, remote string
	closeOnce     sync.Once
	closed        chan struct{}
}

// wait blocks while the link from -> to is blocked.
func (c *faultConn) wait(from, to string) (linkState, error) {
	for {
		st, changed := c.net.state(from, to)
		if !st.blocked {
			return st, nil
		}
		select {
		case <-changed:
		case <-c.closed:
			return st, net.ErrClosed
		}
	}
}

func (c *faultConn) Write(p []byte) (int, error) {
	st, err := c.wait(c.local, c.remote)
	if err != nil {
		return 0, err
	}
	if st.delay > 0 {
		t := time.NewTimer(st.delay)
		select {
		case <-t.C:
		case <-c.closed:
			t.Stop()
			return 0, net.ErrClosed
		}
	}
	if c.net.roll(st.drop) {
		_ = c.Close()
		return 0, errDropped
	}
	return c.Conn.Write(p)
}

// Read holds data that arrived while the link back from the peer is
// blocked until it heals, as a partitioned TCP connection would deliver it
// (late) after retransmission.
func (c *faultConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if _, werr := c.wait(c.remote, c.local); werr != nil {
		return 0, werr
	}
	return n, err
}

func (c *faultConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.net.mu.Lock()
		delete(c.net.conns, c)
		c.net.mu.Unlock()
	})
	return c.Conn.Close()
}
