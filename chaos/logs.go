package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
)

// logFollower copies one container's stdout and stderr into a host file,
// across restarts of the container.
//
// File format: the node's lines as it wrote them, stdout and stderr
// interleaved in the order the engine received them, plus marker lines the
// harness writes when it acts on the node:
//
//	# chaos 2026-01-01T12:00:00.000000000Z n1 SIGKILL
//
// How restarts are followed: the engine keeps a container's log across
// restarts, and a following log stream ends when the container stops. The
// follower asks for lines with timestamps, strips them, remembers the last
// one, and on the next start (signalled by Cluster.startNode) reopens the
// stream from just after it; the engine's "since" filter is inclusive, hence
// the extra nanosecond. So nothing is copied twice and nothing between two
// streams is lost.
type logFollower struct {
	log     *slog.Logger
	dc      logSource
	node    string
	starts  chan struct{} // a start happened; capacity 1, so starts coalesce
	since   time.Time     // last timestamp copied; owned by run, then by drain
	partial []byte        // bytes after the last newline; owned as since is

	mu sync.Mutex // guards f and id
	f  *os.File
	// id is the container's id. It changes when Cluster.Recreate replaces
	// the container; the engine's timestamps keep increasing across the
	// two, so "since" still selects exactly the lines not yet copied.
	id string
}

// setID names the container to follow from the next stream on.
func (l *logFollower) setID(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.id = id
}

func (l *logFollower) containerID() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.id
}

// logSource is the part of the Docker client the follower uses.
type logSource interface {
	ContainerLogs(ctx context.Context, id string, o client.ContainerLogsOptions) (client.ContainerLogsResult, error)
}

func newLogFollower(log *slog.Logger, dc logSource, node, path string) (*logFollower, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("chaos: log file: %w", err)
	}
	return &logFollower{log: log, dc: dc, node: node, starts: make(chan struct{}, 1), f: f}, nil
}

// started tells the follower the container (re)started.
func (l *logFollower) started() {
	select {
	case l.starts <- struct{}{}:
	default:
	}
}

// run follows the container until ctx ends. It is owned by the Cluster,
// which cancels ctx and waits for it in Terminate.
func (l *logFollower) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.starts:
		}
		// Retry a stream that failed for another reason than the container
		// stopping, a few times, so a hiccup of the engine loses no lines.
		for attempt := 0; attempt < 5; attempt++ {
			err := l.copy(ctx, true)
			if err == nil || ctx.Err() != nil {
				break
			}
			l.log.Debug("chaos: log stream", "node", l.node, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// drain copies whatever the engine has after the last copied line, without
// following. It is called after run has returned.
func (l *logFollower) drain(ctx context.Context) {
	if err := l.copy(ctx, false); err != nil {
		l.log.Debug("chaos: drain log", "node", l.node, "err", err)
	}
	l.flushPartial()
}

func (l *logFollower) copy(ctx context.Context, follow bool) error {
	opts := client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true, Follow: follow}
	if !l.since.IsZero() {
		t := l.since.Add(time.Nanosecond)
		opts.Since = strconv.FormatInt(t.Unix(), 10) + "." + fmt.Sprintf("%09d", t.Nanosecond())
	}
	rc, err := l.dc.ContainerLogs(ctx, l.containerID(), opts)
	if err != nil {
		return err
	}
	defer rc.Close()
	// Both streams go to one writer: frames are whole log messages, so
	// lines stay intact.
	_, err = stdcopy.StdCopy(lineWriter{l}, lineWriter{l}, rc)
	return err
}

// lineWriter receives demultiplexed log bytes: lines that each start with
// the engine's RFC 3339 timestamp and a space.
type lineWriter struct{ l *logFollower }

func (w lineWriter) Write(p []byte) (int, error) {
	l := w.l
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := l.partial[:i+1]
		if ts, rest, ok := bytes.Cut(line, []byte{' '}); ok {
			if t, err := time.Parse(time.RFC3339Nano, string(ts)); err == nil {
				l.since = t
				line = rest
			}
		}
		l.write(line)
		l.partial = l.partial[i+1:]
	}
	// Compact, so a long-lived follower does not keep a growing array.
	l.partial = append([]byte(nil), l.partial...)
	return len(p), nil
}

func (l *logFollower) flushPartial() {
	if len(l.partial) > 0 {
		l.write(append(l.partial, '\n'))
		l.partial = nil
	}
}

func (l *logFollower) write(b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	if _, err := l.f.Write(b); err != nil {
		l.log.Debug("chaos: write log", "node", l.node, "err", err)
	}
}

// mark writes a harness marker line (format above).
func (l *logFollower) mark(what string) {
	l.write([]byte("# chaos " + time.Now().UTC().Format(time.RFC3339Nano) + " " + l.node + " " + what + "\n"))
}

// close closes the file; safe to call twice.
func (l *logFollower) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	if err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("chaos: close log %s: %w", l.node, err)
	}
	return nil
}
