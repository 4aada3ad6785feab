package transport

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// BenchmarkAppendEntries measures entries/s from one manager to another
// through AppendEntries, with 256-byte entries in 64-entry batches, sent
// one at a time or pipelined at several depths. The follower is a stand-in
// for raft that answers each request in order, either at once (noop) or
// after writing the entries to a file and fsyncing it, as a real follower
// does before answering (fsync). The delay variant adds 500 µs to every
// request on its way (through Config.Dialer), like a network between
// hosts. It reports entries/s and the p50/p99 time from sending a batch to
// its response being consumed.
//
//	go test -run '^$' -bench BenchmarkAppendEntries -benchtime 2s ./rpc/transport/
func BenchmarkAppendEntries(b *testing.B) {
	const entrySize, batch = 256, 64
	setups := []struct {
		follower string
		delay    time.Duration
	}{
		{"noop", 0},
		{"noop", 500 * time.Microsecond},
		{"fsync", 0},
		{"fsync", 500 * time.Microsecond},
	}
	for _, s := range setups {
		for _, depth := range []int{-1, 1, 2, 4, 8, 16, 64} {
			mode := "sync"
			if depth > 0 {
				mode = fmt.Sprintf("pipeline=%d", depth)
			}
			name := fmt.Sprintf("follower=%s/delay=%v/%s", s.follower, s.delay, mode)
			b.Run(name, func(b *testing.B) {
				benchAppend(b, s.follower, s.delay, depth, entrySize, batch)
			})
		}
	}
}

// delayConn delays every write by a fixed time without limiting
// throughput: writes are queued with their due time and a goroutine, owned
// by the connection and stopped by Close, sends them when due.
type delayConn struct {
	net.Conn
	delay time.Duration
	queue chan delayedWrite
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

type delayedWrite struct {
	due time.Time
	b   []byte
}

func delayDialer(delay time.Duration) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		dc := &delayConn{Conn: c, delay: delay, queue: make(chan delayedWrite, 4096), done: make(chan struct{})}
		dc.wg.Add(1)
		go dc.pump()
		return dc, nil
	}
}

func (c *delayConn) Write(p []byte) (int, error) {
	w := delayedWrite{due: time.Now().Add(c.delay), b: append([]byte(nil), p...)}
	select {
	case c.queue <- w:
		return len(p), nil
	case <-c.done:
		return 0, net.ErrClosed
	}
}

func (c *delayConn) pump() {
	defer c.wg.Done()
	for {
		select {
		case w := <-c.queue:
			if d := time.Until(w.due); d > 0 {
				time.Sleep(d)
			}
			if _, err := c.Conn.Write(w.b); err != nil {
				return
			}
		case <-c.done:
			return
		}
	}
}

func (c *delayConn) Close() error {
	c.once.Do(func() { close(c.done) })
	err := c.Conn.Close()
	c.wg.Wait()
	return err
}

func benchAppend(b *testing.B, follower string, delay time.Duration, depth, entrySize, batch int) {
	src := startNode(b, "c", func(c *Config) {
		c.PipelineDepth = depth
		if delay > 0 {
			c.Dialer = delayDialer(delay)
		}
	})
	dst := startNode(b, "c", nil)
	ts, td := src.group(b, "g"), dst.group(b, "g")

	var file *os.File
	if follower == "fsync" {
		f, err := os.Create(filepath.Join(b.TempDir(), "log"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = f.Close() })
		file = f
	}
	serveConsumer(b, td, func(rpc raft.RPC) (any, error) {
		req := rpc.Command.(*raft.AppendEntriesRequest)
		if file != nil {
			for _, e := range req.Entries {
				if _, err := file.Write(e.Data); err != nil {
					return nil, err
				}
			}
			if err := file.Sync(); err != nil {
				return nil, err
			}
		}
		last := req.PrevLogEntry + uint64(len(req.Entries))
		return &raft.AppendEntriesResponse{Term: req.Term, LastLog: last, Success: true}, nil
	})

	newReq := func(i int) *raft.AppendEntriesRequest {
		req := &raft.AppendEntriesRequest{
			RPCHeader:         raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("a"), Addr: []byte(src.addr)},
			Term:              1,
			PrevLogEntry:      uint64(i * batch),
			PrevLogTerm:       1,
			LeaderCommitIndex: uint64(i * batch),
			Entries:           make([]*raft.Log, batch),
		}
		for j := range req.Entries {
			req.Entries[j] = &raft.Log{Index: uint64(i*batch + j + 1), Term: 1, Data: make([]byte, entrySize), AppendedAt: time.Now()}
		}
		return req
	}
	target := raft.ServerAddress(dst.addr)
	// Warm the connection up.
	if err := ts.AppendEntries("b", target, newReq(0), new(raft.AppendEntriesResponse)); err != nil {
		b.Fatal(err)
	}

	lat := make([]time.Duration, 0, b.N)
	b.SetBytes(int64(batch * entrySize))
	b.ResetTimer()
	start := time.Now()
	if depth < 0 {
		for i := range b.N {
			req := newReq(i + 1)
			t0 := time.Now()
			if err := ts.AppendEntries("b", target, req, new(raft.AppendEntriesResponse)); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
	} else {
		p, err := ts.AppendEntriesPipeline("b", target)
		if err != nil {
			b.Fatal(err)
		}
		sendErr := make(chan error, 1)
		go func() {
			for i := range b.N {
				if _, err := p.AppendEntries(newReq(i+1), new(raft.AppendEntriesResponse)); err != nil {
					sendErr <- err
					return
				}
			}
			sendErr <- nil
		}()
		for range b.N {
			f := <-p.Consumer()
			if err := f.Error(); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(f.Start()))
		}
		if err := <-sendErr; err != nil {
			b.Fatal(err)
		}
		_ = p.Close()
	}
	elapsed := time.Since(start)
	b.StopTimer()

	slices.Sort(lat)
	b.ReportMetric(float64(b.N*batch)/elapsed.Seconds(), "entries/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
