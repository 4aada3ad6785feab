package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// Targets metabench can drive.
const (
	targetMeta = "meta"
	targetEtcd = "etcd"
)

// Default endpoints: the cluster `make run` starts, and the etcd cluster
// ci/bench.sh starts.
const (
	defaultMetaEndpoints = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
	defaultEtcdEndpoints = "127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379"
)

// errUnsupported is returned when a workload needs an ability the target's
// connections lack (offsets on a target without them, say).
var errUnsupported = errors.New("metabench: workload not supported by this target")

// conn is one client connection to a cluster, shared by several workers.
// The operations a workload needs are separate small interfaces (putter,
// getter, ...) declared next to the workloads; a workload asserts them.
type conn interface {
	io.Closer
	// unknown reports whether a failed write may have been applied.
	unknown(err error) bool
}

// pinger is implemented by connections that can check, before the clock
// starts, that the cluster serves and that their connections are ready.
type pinger interface {
	ping(ctx context.Context) error
}

// targetConn is what the connection of every target (meta, etcd)
// implements: the operations of every workload, and ping.
type targetConn interface {
	conn
	putter
	getter
	offsetCommitter
	offsetFetcher
	sessionPutter
	sessionLister
	pinger
}

// dialConfig is what every target needs to open a connection.
type dialConfig struct {
	endpoints []string
	timeout   time.Duration // per request
	log       *slog.Logger
	// tls and token: meta's (nil, "": plaintext, anonymous).
	tls   *tls.Config
	token string
	// noCoalesce: meta's client sends every call alone.
	noCoalesce bool
}

// openConns opens n connections to target, closing what it opened if one
// fails.
func openConns(target string, n int, cfg dialConfig) ([]conn, error) {
	var open func(dialConfig) (conn, error)
	switch target {
	case targetMeta:
		open = openMeta
	case targetEtcd:
		open = openEtcd
	default:
		return nil, fmt.Errorf("--target: %q is not %s or %s", target, targetMeta, targetEtcd)
	}
	conns := make([]conn, 0, n)
	for range n {
		c, err := open(cfg)
		if err != nil {
			closeConns(conns)
			return nil, err
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func closeConns(conns []conn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// pingAll checks every connection, so that connection set-up is not
// counted in the first calls' latency and a cluster that is not running is
// reported at once rather than after --total timeouts.
func pingAll(ctx context.Context, conns []conn) error {
	for i, c := range conns {
		p, ok := c.(pinger)
		if !ok {
			continue
		}
		if err := p.ping(ctx); err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
	}
	return nil
}

// splitEndpoints parses a comma-separated list, dropping empty entries.
func splitEndpoints(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}
