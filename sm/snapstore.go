package sm

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/metamq/meta/sm/logpb"
)

// SnapStore is a group's raft.SnapshotStore. Its snapshots are not copies
// of the group's data (see the format notes in snapshot.go):
//
//   - A snapshot raft takes locally is a MARKER: raft's metadata (index,
//     term, configuration) and the machine's applied state, a few hundred
//     bytes. Before a marker is stored the write-ahead log is synced, so
//     the data it stands for is durable before raft compacts its log.
//   - When raft opens a marker to send it to a follower, the data is
//     exported then, from one RocksDB view, as SST files in a temporary
//     directory, and streamed (at most Limiter's rate); the files are
//     deleted when raft closes the stream.
//   - A snapshot received from a leader is stored as the stream's files
//     ("received"); Machine.Restore ingests them, and the snapshot becomes
//     a marker once the restore completed. A received snapshot that Restore
//     refused (stale or corrupt) is deleted: it never was this replica's
//     state.
//   - Snapshots written by raft's FileSnapshotStore before this store
//     existed (state.bin holding a METASNP1 stream) are listed and opened
//     as they are, so that a restore interrupted before an upgrade can run
//     again; once the machine's state is at or past one, it becomes a
//     marker.
//
// Only the newest snapshot matters to raft. Once the newest is a marker
// (and the state is whole), older snapshots are deleted, except those open.
//
// On disk, under Dir: snapshots/<id>/meta.json (raft's SnapshotMeta, as
// FileSnapshotStore writes it, plus this store's fields), the received
// files or legacy state.bin beside it, snapshots/<id>.tmp while one is
// being written, and work/ for exports and staged restores (emptied at
// start). FileSnapshotStore used the same snapshots/<id> layout, so a
// data directory written by older code opens unchanged.
type SnapStore struct {
	dir       string // Dir/snapshots
	work      string // Dir/work
	m         *Machine
	lim       *Limiter
	log       *slog.Logger
	fileBytes int64

	mu    sync.Mutex
	inUse map[string]int // guarded by mu: open sources per snapshot id
}

// SnapStoreConfig configures a SnapStore.
type SnapStoreConfig struct {
	// Dir is the group's snapshot directory; it is created if missing.
	Dir string
	// Machine is the group's state machine.
	Machine *Machine
	// Limiter bounds the rate at which snapshots are sent (shared by the
	// node's groups); nil sends at full speed.
	Limiter *Limiter
	// FileBytes is the target of key and value bytes per exported SST file;
	// 0 means 64 MiB.
	FileBytes int64
	// Logger receives the store's few lines; nil uses the machine's.
	Logger *slog.Logger
}

var _ raft.SnapshotStore = (*SnapStore)(nil)

// storedMeta is a snapshot's meta.json. FileSnapshotStore wrote the
// embedded SnapshotMeta and CRC; the rest is this store's.
type storedMeta struct {
	raft.SnapshotMeta
	CRC []byte `json:",omitempty"` // legacy: CRC-64 (ECMA) of state.bin

	Format string `json:",omitempty"` // formatMarker, formatFiles; "" is legacy
	// Received is set on a snapshot a leader sent until it is restored.
	Received bool `json:",omitempty"`
	// Applied is the applied state of the data the snapshot stands for:
	// the machine's when raft took it (a marker), the exported view's (the
	// files), the stream's (legacy; read from state.bin when absent).
	Applied *appliedJSON `json:",omitempty"`
	Header  *snapHeader  `json:",omitempty"` // formatFiles
}

const metaFile = "meta.json"

// NewSnapStore opens the snapshot store of cfg.Machine's group. It removes
// what an interrupted write left, and converts the newest snapshot into a
// marker when the machine's state is whole and at or past it.
func NewSnapStore(cfg SnapStoreConfig) (*SnapStore, error) {
	if cfg.Dir == "" || cfg.Machine == nil {
		return nil, errors.New("sm: SnapStoreConfig: Dir and Machine are required")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = cfg.Machine.log
	}
	s := &SnapStore{
		dir:       filepath.Join(cfg.Dir, "snapshots"),
		work:      filepath.Join(cfg.Dir, "work"),
		m:         cfg.Machine,
		lim:       cfg.Limiter,
		log:       logger,
		fileBytes: cfg.FileBytes,
		inUse:     map[string]int{},
	}
	if err := os.RemoveAll(s.work); err != nil {
		return nil, fmt.Errorf("sm: snapshot store: %w", err)
	}
	for _, d := range []string{s.dir, s.work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("sm: snapshot store: %w", err)
		}
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("sm: snapshot store: %w", err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
				return nil, fmt.Errorf("sm: snapshot store: %w", err)
			}
		}
	}
	work := s.work
	s.m.workDir.Store(&work)
	if err := s.tidy(true); err != nil {
		return nil, err
	}
	return s, nil
}

// NeedsRestore reports whether raft must restore the newest snapshot when
// it starts (raft.Config.NoSnapshotRestoreOnStart = !NeedsRestore): when a
// restore was interrupted, or when the machine's data is older than the
// data the newest snapshot stands for (a received snapshot whose restore
// had not begun). Otherwise the data in RocksDB is the state, and raft
// re-delivers the entries after the snapshot, which the machine skips up
// to its applied index.
func (s *SnapStore) NeedsRestore() (bool, error) {
	incomplete, err := s.m.RestoreIncomplete()
	if err != nil || incomplete {
		return incomplete, err
	}
	metas, err := s.load()
	if err != nil || len(metas) == 0 {
		return false, err
	}
	return metas[0].Applied.Index > s.m.AppliedIndex(), nil
}

// List returns the snapshots, newest first (by term, index, id).
func (s *SnapStore) List() ([]*raft.SnapshotMeta, error) {
	metas, err := s.load()
	if err != nil {
		return nil, err
	}
	out := make([]*raft.SnapshotMeta, len(metas))
	for i, sm := range metas {
		m := sm.SnapshotMeta
		out[i] = &m
	}
	return out, nil
}

// load reads every snapshot's metadata, newest first. A directory whose
// metadata cannot be read is skipped with a warning (FileSnapshotStore
// did the same).
func (s *SnapStore) load() ([]*storedMeta, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("sm: snapshot store: %w", err)
	}
	var out []*storedMeta
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		sm, err := s.readMeta(e.Name())
		if err != nil {
			s.log.Warn("skipping an unreadable snapshot", "id", e.Name(), "err", err)
			continue
		}
		out = append(out, sm)
	}
	slices.SortFunc(out, func(a, b *storedMeta) int {
		if c := cmpU(b.Term, a.Term); c != 0 {
			return c
		}
		if c := cmpU(b.Index, a.Index); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out, nil
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *SnapStore) readMeta(id string) (*storedMeta, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, id, metaFile))
	if err != nil {
		return nil, err
	}
	sm := &storedMeta{}
	if err := json.Unmarshal(b, sm); err != nil {
		return nil, fmt.Errorf("%s: %w", metaFile, err)
	}
	switch sm.Format {
	case formatLegacy:
		if sm.Applied == nil {
			st, err := legacyApplied(filepath.Join(s.dir, id, legacyFile))
			if err != nil {
				return nil, err
			}
			a := toJSON(st)
			sm.Applied = &a
		}
	case formatMarker:
	case formatFiles:
		if sm.Header == nil {
			return nil, fmt.Errorf("%s: a files snapshot without a header", metaFile)
		}
	default:
		return nil, fmt.Errorf("%s: unknown format %q", metaFile, sm.Format)
	}
	if sm.Applied == nil {
		return nil, fmt.Errorf("%s: no applied state", metaFile)
	}
	return sm, nil
}

// legacyApplied reads the applied state from a METASNP1 file's header.
func legacyApplied(path string) (*logpb.AppliedState, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return nil, fmt.Errorf("%w: %s: missing magic", ErrBadSnapshot, legacyFile)
	}
	_, st, err := readLegacyHeader(br)
	return st, err
}

// writeMeta writes dir's meta.json atomically and durably.
func writeMeta(dir string, sm *storedMeta) error {
	b, err := json.Marshal(sm)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, metaFile+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, metaFile)); err != nil {
		return err
	}
	return syncDir(dir)
}

// tidy converts the newest snapshot into a marker when it can, and then
// deletes the older ones not open. At start (startup) a received snapshot
// may be converted too: its restore completed before a crash, or it was
// never needed. It does nothing while a restore is incomplete or the
// machine's state is behind the newest snapshot: raft will restore one.
func (s *SnapStore) tidy(startup bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	metas, err := s.load()
	if err != nil || len(metas) == 0 {
		return err
	}
	incomplete, err := s.m.RestoreIncomplete()
	if err != nil || incomplete {
		return err
	}
	newest := metas[0]
	if newest.Format != formatMarker {
		if newest.Received && !startup || s.inUse[newest.ID] > 0 || newest.Applied.Index > s.m.AppliedIndex() {
			return nil
		}
		if err := s.toMarker(newest, *newest.Applied); err != nil {
			return err
		}
	}
	for _, old := range metas[1:] {
		if s.inUse[old.ID] > 0 {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.dir, old.ID)); err != nil {
			return fmt.Errorf("sm: snapshot store: %w", err)
		}
		s.log.Info("deleted a superseded snapshot", "id", old.ID, "format", formatName(old.Format))
	}
	return nil
}

func formatName(f string) string {
	if f == formatLegacy {
		return "legacy"
	}
	return f
}

// toMarker rewrites snapshot sm as a marker of applied, whose data the
// machine holds, and deletes its files. The write-ahead log is synced
// first: the marker vouches for data the machine wrote without syncing.
func (s *SnapStore) toMarker(sm *storedMeta, applied appliedJSON) error {
	if err := s.m.db.SyncWAL(); err != nil {
		return err
	}
	was := formatName(sm.Format)
	dir := filepath.Join(s.dir, sm.ID)
	sm.Format, sm.Received, sm.Applied, sm.Header, sm.CRC, sm.Size = formatMarker, false, &applied, nil, nil, 0
	if err := writeMeta(dir, sm); err != nil {
		return fmt.Errorf("sm: snapshot store: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("sm: snapshot store: %w", err)
	}
	for _, e := range entries {
		if e.Name() != metaFile {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("sm: snapshot store: %w", err)
			}
		}
	}
	s.log.Info("snapshot is now a marker: the machine's state is at or past it", "id", sm.ID, "was", was, "index", sm.Index)
	return nil
}

// Create starts a snapshot at raft's index and term: a local marker
// (Machine.Snapshot's Persist writes one) or a stream a leader sends.
func (s *SnapStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, _ raft.Transport) (raft.SnapshotSink, error) {
	if version < raft.SnapshotVersionMin || version > raft.SnapshotVersionMax {
		return nil, fmt.Errorf("sm: snapshot store: unsupported snapshot version %d", version)
	}
	id, tmp, err := s.newID(term, index)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	k := &sink{
		s:    s,
		tmp:  tmp,
		pw:   pw,
		done: make(chan struct{}),
		meta: &storedMeta{SnapshotMeta: raft.SnapshotMeta{Version: version, ID: id, Index: index, Term: term,
			Configuration: configuration, ConfigurationIndex: configurationIndex}},
	}
	go k.receive(pr)
	return k, nil
}

// newID makes a snapshot id (FileSnapshotStore's form, term-index-msec)
// and its temporary directory.
func (s *SnapStore) newID(term, index uint64) (id, tmp string, err error) {
	base := fmt.Sprintf("%d-%d-%d", term, index, time.Now().UnixMilli())
	for n := 0; ; n++ {
		id = base
		if n > 0 {
			id = fmt.Sprintf("%s.%d", base, n)
		}
		tmp = filepath.Join(s.dir, id+".tmp")
		if _, err := os.Stat(filepath.Join(s.dir, id)); err == nil {
			continue
		}
		if err := os.Mkdir(tmp, 0o755); err != nil {
			if errors.Is(err, os.ErrExist) {
				continue
			}
			return "", "", fmt.Errorf("sm: snapshot store: %w", err)
		}
		return id, tmp, nil
	}
}

// sink receives one snapshot through a pipe read by its own goroutine
// (receive), which stores what arrives as it arrives.
type sink struct {
	s    *SnapStore
	meta *storedMeta
	tmp  string
	pw   *io.PipeWriter
	done chan struct{} // closed when the receiving goroutine has returned
	rc   *received     // set by the goroutine before done
	err  error         // set by the goroutine before done
	once sync.Once
	cerr error
}

var errSinkCancelled = errors.New("sm: snapshot cancelled")

func (k *sink) receive(pr *io.PipeReader) {
	defer close(k.done)
	m := k.s.m
	stale := func(index uint64) error {
		err := m.staleCheck(index)
		var se *staleError
		if errors.As(err, &se) {
			m.refusedStale(se)
		}
		return err
	}
	k.rc, k.err = receive(pr, k.tmp, m.kind, k.meta.Index, stale)
	if k.err == nil && k.rc.format != formatMarker && k.rc.applied == nil {
		k.err = fmt.Errorf("%w: no applied state", ErrBadSnapshot)
	}
	// Unblock the writer: with the error, or (EOF seen) for good.
	_ = pr.CloseWithError(errors.Join(k.err, errSinkCancelled))
}

func (k *sink) ID() string { return k.meta.ID }

// Write hands p to the receiving goroutine; after it failed (a bad or
// stale stream), Write returns its error.
func (k *sink) Write(p []byte) (int, error) {
	n, err := k.pw.Write(p)
	if err != nil {
		<-k.done
		if k.err != nil {
			return n, k.err
		}
	}
	return n, err
}

// Cancel abandons the snapshot.
func (k *sink) Cancel() error {
	k.once.Do(func() {
		_ = k.pw.CloseWithError(errSinkCancelled)
		<-k.done
		k.cerr = os.RemoveAll(k.tmp)
	})
	return k.cerr
}

// Close completes the snapshot: the stream must have ended whole. A marker
// is stored after the write-ahead log is synced (raft compacts its log
// once Close returns, so the data the marker stands for must be durable).
func (k *sink) Close() error {
	k.once.Do(func() { k.cerr = k.close() })
	return k.cerr
}

func (k *sink) close() error {
	_ = k.pw.Close()
	<-k.done
	fail := func(err error) error {
		_ = os.RemoveAll(k.tmp)
		return err
	}
	if k.err != nil {
		return fail(k.err)
	}
	rc, meta := k.rc, k.meta
	a := toJSON(rc.applied)
	meta.Format, meta.Applied = rc.format, &a
	switch rc.format {
	case formatMarker:
		if rc.applied.Index > meta.Index {
			return fail(fmt.Errorf("%w: marker of index %d in a snapshot at %d", ErrBadSnapshot, rc.applied.Index, meta.Index))
		}
		if err := k.s.m.db.SyncWAL(); err != nil {
			return fail(err)
		}
	case formatFiles:
		meta.Received, meta.Header, meta.Size = true, rc.header, rc.size
	case formatLegacy:
		meta.Received, meta.Size = true, rc.size
	}
	if err := writeMeta(k.tmp, meta); err != nil {
		return fail(fmt.Errorf("sm: snapshot store: %w", err))
	}
	if err := os.Rename(k.tmp, filepath.Join(k.s.dir, meta.ID)); err != nil {
		return fail(fmt.Errorf("sm: snapshot store: %w", err))
	}
	if err := syncDir(k.s.dir); err != nil {
		return err
	}
	if rc.format == formatMarker {
		return k.s.tidy(false)
	}
	k.s.log.Info("received a snapshot", "id", meta.ID, "index", meta.Index, "applied", a.Index, "bytes", rc.size)
	return nil
}

// Open opens snapshot id for raft: to send it to a follower (it is read
// as a stream) or to restore it (Machine.Restore takes its files
// directly). A marker is exported now (see SnapStore).
func (s *SnapStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	s.mu.Lock()
	sm, err := s.readMeta(id)
	if err != nil {
		s.mu.Unlock()
		return nil, nil, fmt.Errorf("sm: open snapshot %s: %w", id, err)
	}
	s.inUse[id]++
	s.mu.Unlock()
	src := &snapSource{store: s, id: id, format: sm.Format, dir: filepath.Join(s.dir, id), header: sm.Header}
	var size int64
	switch sm.Format {
	case formatMarker:
		src.format = formatFiles
		var dir string
		dir, err = os.MkdirTemp(s.work, "export-")
		start := time.Now()
		if err == nil {
			src.dir, src.export = dir, true
			src.header, err = s.m.export(src.dir, sm.Index, sm.Term, sm.Applied.Index, s.fileBytes)
		}
		if err == nil {
			size, err = src.header.streamSize()
		}
		if err == nil {
			s.m.snaps.exported(time.Since(start), size)
			s.log.Info("exported a snapshot to send", "id", id, "index", sm.Index, "applied", src.header.Applied.Index,
				"files", len(src.header.Files), "bytes", size)
		}
	case formatFiles:
		size, err = sm.Header.streamSize()
	case formatLegacy:
		size, err = checkLegacy(filepath.Join(src.dir, legacyFile), sm.CRC)
	}
	if err != nil {
		_ = src.Close()
		return nil, nil, fmt.Errorf("sm: open snapshot %s: %w", id, err)
	}
	meta := sm.SnapshotMeta
	meta.Size = size
	return &meta, src, nil
}

// checkLegacy verifies state.bin against the CRC-64 FileSnapshotStore
// recorded (when there is one) and returns its size.
func checkLegacy(path string, want []byte) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, err
	}
	if want != nil && !bytes.Equal(h.Sum(nil), want) {
		return 0, fmt.Errorf("%w: %s: CRC mismatch", ErrBadSnapshot, legacyFile)
	}
	return n, nil
}

// snapSource is what Open returns: a stream of the snapshot (a file stream
// of its files, or the legacy state.bin) read at most at the store's
// Limiter's rate, and, for Machine.Restore, the files themselves.
type snapSource struct {
	store  *SnapStore
	id     string
	format string      // formatFiles (an export or a received snapshot) or formatLegacy
	dir    string      // where the files are
	header *snapHeader // formatFiles
	export bool        // dir is an export's, removed at Close

	r      io.Reader  // the stream, made at the first Read
	open   *os.File   // legacy: state.bin, being streamed
	chain  *fileChain // files: the files, being streamed
	closed bool
}

func (src *snapSource) source() *snapSource { return src }

func (src *snapSource) Read(p []byte) (int, error) {
	if src.closed {
		return 0, os.ErrClosed
	}
	if src.r == nil {
		var r io.Reader
		if src.format == formatLegacy {
			f, err := os.Open(filepath.Join(src.dir, legacyFile))
			if err != nil {
				return 0, err
			}
			src.open, r = f, f
		} else {
			hb, err := src.header.encode()
			if err != nil {
				return 0, err
			}
			src.chain = &fileChain{dir: src.dir, files: src.header.Files}
			r = io.MultiReader(bytes.NewReader(hb), src.chain)
		}
		src.r = src.store.lim.reader(r)
	}
	return src.r.Read(p)
}

// fileChain reads a header's files in dir one after another, each exactly
// as long as the header says.
type fileChain struct {
	dir   string
	files []snapFile
	next  int       // index of the next file to open
	open  *os.File  // the file being read
	cur   io.Reader // open, limited to its size
	left  int64     // bytes of the open file not yet read
}

func (c *fileChain) Read(p []byte) (int, error) {
	for {
		if c.cur == nil {
			if c.next == len(c.files) {
				return 0, io.EOF
			}
			f := c.files[c.next]
			c.next++
			file, err := os.Open(filepath.Join(c.dir, f.Name))
			if err != nil {
				return 0, err
			}
			c.open, c.cur, c.left = file, io.LimitReader(file, f.Size), f.Size
		}
		n, err := c.cur.Read(p)
		c.left -= int64(n)
		if errors.Is(err, io.EOF) {
			if c.left != 0 {
				return n, fmt.Errorf("%w: a snapshot file is shorter than its header says", ErrBadSnapshot)
			}
			_ = c.open.Close()
			c.open, c.cur = nil, nil
			if n == 0 {
				continue
			}
			return n, nil
		}
		return n, err
	}
}

// finish records how Restore ended (Restore calls it before Close): a
// completed restore turns the snapshot into a marker; a refused one
// deletes it if a leader sent it (it never was this replica's state).
func (src *snapSource) finish(o restoreOutcome) {
	s := src.store
	switch o {
	case restoreComplete:
		s.mu.Lock()
		sm, err := s.readMeta(src.id)
		if err == nil && sm.Format != formatMarker {
			err = s.toMarker(sm, toJSON(s.m.appliedState()))
		}
		s.mu.Unlock()
		if err != nil {
			s.log.Warn("could not turn a restored snapshot into a marker", "id", src.id, "err", err)
		}
	case restoreRefused:
		s.mu.Lock()
		sm, err := s.readMeta(src.id)
		if err == nil && sm.Received {
			err = os.RemoveAll(src.dir)
			s.log.Info("deleted a refused snapshot", "id", src.id)
		}
		s.mu.Unlock()
		if err != nil {
			s.log.Warn("could not delete a refused snapshot", "id", src.id, "err", err)
		}
	case restoreFailed:
		// The files stay: the restore must run again (at start).
	}
}

// close closes the file being read, if any.
func (c *fileChain) close() error {
	if c == nil || c.open == nil {
		return nil
	}
	err := c.open.Close()
	c.open, c.cur = nil, nil
	return err
}

// Close releases the snapshot: an export's files are deleted; then older
// snapshots may be tidied away. Safe to call twice.
func (src *snapSource) Close() error {
	if src.closed {
		return nil
	}
	src.closed = true
	err := src.chain.close()
	if src.open != nil {
		err = errors.Join(err, src.open.Close())
	}
	if src.export {
		err = errors.Join(err, os.RemoveAll(src.dir))
	}
	s := src.store
	s.mu.Lock()
	if s.inUse[src.id]--; s.inUse[src.id] <= 0 {
		delete(s.inUse, src.id)
	}
	s.mu.Unlock()
	return errors.Join(err, s.tidy(false))
}
