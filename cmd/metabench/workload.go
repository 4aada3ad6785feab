package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// errMissing is returned by a linearizable read that found no value for
// a key the workload had written before the clock started: a failure.
var errMissing = errors.New("metabench: key not found")

// errStaleMiss is returned by a stale read that found no value for such a
// key. The replica may lag behind the load, so it is counted apart and is
// not a failure.
var errStaleMiss = errors.New("metabench: key not found by a stale read")

// workload is one kind of call the runner drives. Calls are numbered
// 0..calls-1; the runner hands each number to exactly one worker.
type workload interface {
	// unit names what an item is, plural ("puts", "offsets").
	unit() string
	// writes reports whether calls change state, so that a failure may
	// have an unknown outcome.
	writes() bool
	// check reports errUnsupported when c lacks what the calls need.
	check(c conn) error
	// prepare runs before the clock starts (loading keys to read).
	prepare(ctx context.Context, conns []conn, p prepareEnv) error
	// call performs call seq, carrying n items, on c.
	call(ctx context.Context, c conn, w *worker, seq int64, n int) error
}

// writeOnly serves the workloads whose calls write and that need nothing
// prepared: writes reports true, prepare does nothing.
type writeOnly struct{}

func (writeOnly) writes() bool                                      { return true }
func (writeOnly) prepare(context.Context, []conn, prepareEnv) error { return nil }

// prepareEnv is what prepare may use: the runner's settings and a way to
// drive a loading phase with the same workers.
type prepareEnv struct {
	clients   int
	seed      uint64
	valueSize int
	timeout   time.Duration // per call
	// phase starts a progress line for a loading phase of total items
	// (unit names them); add counts items done, end stops the line.
	phase func(label, unit string, total int64) (add func(int64), end func())
}

// worker is one goroutine's private state; workloads keep their scratch
// buffers here so that calls do not allocate.
type worker struct {
	id    int
	rng   *rand.Rand
	key   []byte
	value []byte
	// offsets is the offsets workload's reusable batch.
	offsets []offsetCommit
	// sessions is the sessions workloads' reusable batch.
	sessions []session
}

// newWorker seeds worker id's generator from seed, so that a run is
// reproducible; valueSize random letters make its value.
func newWorker(id int, seed uint64, valueSize int) *worker {
	w := &worker{id: id, rng: rand.New(rand.NewPCG(seed, uint64(id)))}
	w.value = make([]byte, valueSize)
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	for i := range w.value {
		w.value[i] = letters[w.rng.IntN(len(letters))]
	}
	return w
}

// keySpace names keys prefix + zero-padded decimal index, exactly size
// bytes long.
type keySpace struct {
	prefix string
	size   int
}

// validate reports whether indexes below n fit in size bytes.
func (k keySpace) validate(n int64) error {
	digits := len(strconv.FormatInt(max(n-1, 0), 10))
	if len(k.prefix)+digits > k.size {
		return fmt.Errorf("--key-size %d is too small for prefix %q and %d keys (need at least %d)",
			k.size, k.prefix, n, len(k.prefix)+digits)
	}
	return nil
}

// key writes key i into dst's storage and returns it.
func (k keySpace) key(dst []byte, i int64) []byte {
	dst = append(dst[:0], k.prefix...)
	digits := strconv.AppendInt(nil, i, 10)
	for range k.size - len(k.prefix) - len(digits) {
		dst = append(dst, '0')
	}
	return append(dst, digits...)
}

// putter writes one key.
type putter interface {
	put(ctx context.Context, key, value []byte) error
}

// getter reads one key; found is false when it does not exist.
type getter interface {
	get(ctx context.Context, key []byte, stale bool) (found bool, err error)
}

// offsetCommit is one consumer offset.
type offsetCommit struct {
	group     string
	topic     string
	partition int32
	offset    int64
}

// offsetCommitter commits a batch of offsets atomically.
type offsetCommitter interface {
	commitOffsets(ctx context.Context, offsets []offsetCommit) error
}

// offsetFetcher reads the committed offsets of a batch of partitions (their
// offset fields are ignored) in one call; found counts those that have one.
type offsetFetcher interface {
	fetchOffsets(ctx context.Context, partitions []offsetCommit, stale bool) (found int, err error)
}

func supports[I any](c conn, what string) error {
	if _, ok := c.(I); !ok {
		return fmt.Errorf("%w: %s", errUnsupported, what)
	}
	return nil
}

// putWorkload writes key i of its key space in call i: unique keys.
type putWorkload struct {
	writeOnly
	keys keySpace
}

func (p *putWorkload) unit() string       { return "puts" }
func (p *putWorkload) check(c conn) error { return supports[putter](c, "put") }

func (p *putWorkload) call(ctx context.Context, c conn, w *worker, seq int64, _ int) error {
	w.key = p.keys.key(w.key, seq)
	return c.(putter).put(ctx, w.key, w.value)
}

// reads is what the read workloads (get, sessions-list) share: they read
// n items that prepare loads first unless load is false, at stale
// consistency if stale.
type reads struct {
	n     int64
	stale bool
	load  bool
}

func (reads) writes() bool { return false }

// loadAll is the prepare of a read workload: unless load is false, it
// makes calls calls of fn with the run's workers, counting the items each
// wrote (what: their name) towards n, and fails on the first error:
// reading what was never loaded would measure nothing.
func (r reads) loadAll(ctx context.Context, conns []conn, env prepareEnv, what string, calls int64,
	fn func(ctx context.Context, c conn, w *worker, i int64) (int64, error)) error {
	if !r.load {
		return nil
	}
	add, end := env.phase("load", what, r.n)
	defer end()
	return forEach(ctx, env, conns, calls, func(ctx context.Context, c conn, w *worker, i int64) error {
		n, err := fn(ctx, c, w, i)
		if err != nil {
			return err
		}
		add(n)
		return nil
	})
}

// supportsReads reports errUnsupported when c lacks R, what the reads
// need (read names them), or, with load, W, what loading them needs.
func supportsReads[R, W any](c conn, read string, load bool, write string) error {
	if err := supports[R](c, read); err != nil {
		return err
	}
	if load {
		return supports[W](c, write)
	}
	return nil
}

// getWorkload reads keys chosen uniformly from a key space of n keys that
// prepare loads (unless load is false).
type getWorkload struct {
	reads
	keys keySpace
}

func (g *getWorkload) unit() string { return "gets" }
func (g *getWorkload) check(c conn) error {
	return supportsReads[getter, putter](c, "get", g.load, "put (to load keys)")
}

// prepare writes every key of the space once, with the run's workers, and
// fails on the first error: reading keys that were never loaded would
// measure nothing.
func (g *getWorkload) prepare(ctx context.Context, conns []conn, env prepareEnv) error {
	return g.loadAll(ctx, conns, env, "keys", g.n, func(ctx context.Context, c conn, w *worker, i int64) (int64, error) {
		w.key = g.keys.key(w.key, i)
		if err := c.(putter).put(ctx, w.key, w.value); err != nil {
			return 0, fmt.Errorf("load key %q: %w", w.key, err)
		}
		return 1, nil
	})
}

func (g *getWorkload) call(ctx context.Context, c conn, w *worker, _ int64, _ int) error {
	w.key = g.keys.key(w.key, w.rng.Int64N(g.n))
	found, err := c.(getter).get(ctx, w.key, g.stale)
	if err != nil {
		return err
	}
	if !found {
		if g.stale {
			return errStaleMiss
		}
		return fmt.Errorf("%w: %q", errMissing, w.key)
	}
	return nil
}

// offsetSpace is the consumer offsets the offsets workloads commit and
// read: groups consumer groups (prefix + decimal index) times partitions
// partitions of one topic.
type offsetSpace struct {
	groups     int
	partitions int
	topic      string
	prefix     string
}

// fill sets w.offsets to n consecutive partitions of group (wrapping),
// from first, each with offset.
func (o offsetSpace) fill(w *worker, group, first int64, n int, offset int64) []offsetCommit {
	name := o.prefix + strconv.FormatInt(group, 10)
	w.offsets = w.offsets[:0]
	for i := range int64(n) {
		w.offsets = append(w.offsets, offsetCommit{
			group:     name,
			topic:     o.topic,
			partition: int32((first + i) % int64(o.partitions)),
			offset:    offset,
		})
	}
	return w.offsets
}

// offsetsWorkload commits offsets of groups × partitions of one topic;
// call s commits n consecutive partitions of consumer group s mod groups,
// starting after the ones the previous call to that group committed, with
// offset s.
type offsetsWorkload struct {
	writeOnly
	offsetSpace
}

func (o *offsetsWorkload) unit() string       { return "offsets" }
func (o *offsetsWorkload) check(c conn) error { return supports[offsetCommitter](c, "offsets") }

// batch fills w.offsets with call seq's n offsets.
func (o *offsetsWorkload) batch(w *worker, seq int64, n int) []offsetCommit {
	round := seq / int64(o.groups)
	return o.fill(w, seq%int64(o.groups), round*int64(n)%int64(o.partitions), n, seq)
}

func (o *offsetsWorkload) call(ctx context.Context, c conn, w *worker, seq int64, n int) error {
	return c.(offsetCommitter).commitOffsets(ctx, o.batch(w, seq, n))
}

// offsetsFetchChunk bounds the partitions one loading call commits.
const offsetsFetchChunk = 100

// offsetsFetchWorkload reads committed offsets, as a consumer does when it
// joins a group: call s fetches n consecutive partitions of one consumer
// group, both drawn at random, in one call. prepare first commits every
// partition of every group (unless load is false: what an earlier run
// loaded with the same flags). A partition found without an offset is
// missing (stale reads: a stale miss).
type offsetsFetchWorkload struct {
	reads
	offsetSpace
}

func (o *offsetsFetchWorkload) unit() string { return "offsets" }
func (o *offsetsFetchWorkload) check(c conn) error {
	return supportsReads[offsetFetcher, offsetCommitter](c, "offsets-fetch", o.load, "offsets (to load them)")
}

// prepare commits every group's partitions, offsetsFetchChunk per call.
func (o *offsetsFetchWorkload) prepare(ctx context.Context, conns []conn, env prepareEnv) error {
	chunks := int64((o.partitions + offsetsFetchChunk - 1) / offsetsFetchChunk)
	return o.loadAll(ctx, conns, env, "offsets", int64(o.groups)*chunks, func(ctx context.Context, c conn, w *worker, i int64) (int64, error) {
		first := i % chunks * offsetsFetchChunk
		batch := o.fill(w, i/chunks, first, min(offsetsFetchChunk, o.partitions-int(first)), 1)
		if err := c.(offsetCommitter).commitOffsets(ctx, batch); err != nil {
			return 0, fmt.Errorf("load offsets of %s: %w", batch[0].group, err)
		}
		return int64(len(batch)), nil
	})
}

func (o *offsetsFetchWorkload) call(ctx context.Context, c conn, w *worker, _ int64, n int) error {
	batch := o.fill(w, w.rng.Int64N(int64(o.groups)), w.rng.Int64N(int64(o.partitions)), n, 0)
	found, err := c.(offsetFetcher).fetchOffsets(ctx, batch, o.stale)
	switch {
	case err != nil:
		return err
	case found == n:
		return nil
	case o.stale:
		return errStaleMiss
	}
	return fmt.Errorf("%w: %d of %d partitions of %s", errMissing, n-found, n, batch[0].group)
}
