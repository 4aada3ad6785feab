package sm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rocks"
	"github.com/metamq/meta/sm/logpb"
)

// Snapshots
//
// A group's raft snapshot is not a copy of its data: the state machine's
// data already persists in RocksDB together with the index it reflects, so
// a local snapshot is a MARKER that records raft's snapshot metadata and
// the machine's applied state (see SnapStore). The data is produced only
// when raft opens a snapshot to send it to a follower (InstallSnapshot):
// from one RocksDB view of the group's data column family, as SST files
// that the follower ingests. Three byte formats exist:
//
// Marker (what Machine.Snapshot's Persist writes into a sink):
//
//	magic    8 bytes "METAMRK1"
//	kind     1 byte (Kind)
//	state    uvarint length, then logpb.AppliedState (index, term, revision)
//	crc      4 bytes big-endian: CRC-32C (Castagnoli) of everything above
//
// File stream, version 2 (what SnapStore.Open streams to a follower):
//
//	magic    8 bytes "METASNP2"
//	hlen     4 bytes big-endian: the header's length
//	header   hlen bytes of JSON (snapHeader): format version (2), kind,
//	         raft's snapshot index and term, the applied state of the view
//	         the files were written from, and the files: name, size,
//	         CRC-32C of each
//	hcrc     4 bytes big-endian: CRC-32C of the header bytes
//	files    the files' bytes, in header order, back to back
//
// Each file is an SST file (rocks.SSTWriter) of the group's data keys, from
// prefixUserMin up, in ascending order across files; the reserved 0x00 keys
// are never shipped (the receiver writes its own). A stream with no files
// is an empty state.
//
// Record stream, version 1 (METASNP1; written by meta before file
// snapshots, read for upgrades and from old leaders; see restoreLegacy).
//
// The data a file stream carries may be NEWER than the snapshot's raft
// index (a "fuzzy" snapshot): the view is taken when the snapshot is sent,
// not when raft took it. That is safe: the follower stores the view's
// applied state with the data, raft then re-delivers the entries after the
// snapshot's index, and ApplyBatch skips every entry at or below the stored
// applied index, exactly as it does after a restart. The entries between
// the snapshot's index and the view's are committed (the leader applied
// them), so the follower's log will hold exactly those entries.
const (
	markerMagic   = "METAMRK1"
	fileMagic     = "METASNP2"
	snapshotMagic = "METASNP1"

	// streamVersion is the version of the file stream format.
	streamVersion = 2
)

// ErrBadSnapshot is returned when a snapshot is malformed, corrupt or
// truncated, or belongs to a group of another kind. Restore returns it
// before it changes anything.
var ErrBadSnapshot = errors.New("sm: bad snapshot")

// ErrStaleSnapshot is returned by Restore for a snapshot older than the
// state this replica has already applied (see Machine.Restore).
var ErrStaleSnapshot = errors.New("sm: snapshot older than the applied state")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appliedJSON is a logpb.AppliedState in JSON headers and metadata.
type appliedJSON struct {
	Index    uint64 `json:"index"`
	Term     uint64 `json:"term"`
	Revision uint64 `json:"revision"`
}

func toJSON(st *logpb.AppliedState) appliedJSON {
	return appliedJSON{Index: st.GetIndex(), Term: st.GetTerm(), Revision: st.GetRevision()}
}

func (a appliedJSON) state() *logpb.AppliedState {
	return &logpb.AppliedState{Index: a.Index, Term: a.Term, Revision: a.Revision}
}

// snapHeader is the header of a file stream.
type snapHeader struct {
	Version int         `json:"version"`
	Kind    Kind        `json:"kind"`
	Index   uint64      `json:"index"` // raft's snapshot index
	Term    uint64      `json:"term"`  // raft's snapshot term
	Applied appliedJSON `json:"applied"`
	Files   []snapFile  `json:"files"`
	// Ownership is the group's ownership record in the view (encoded
	// logpb.Ownership; absent when the group has none), also among the
	// files' keys: a restore plans the new cluster's ranges from it
	// without ingesting the files (CheckBackup).
	Ownership []byte `json:"ownership,omitempty"`
}

type snapFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	CRC32C uint32 `json:"crc32c"`
}

// streamSize is the number of bytes of the file stream of h.
func (h *snapHeader) streamSize() (int64, error) {
	hb, err := h.encode()
	if err != nil {
		return 0, err
	}
	n := int64(len(hb))
	for _, f := range h.Files {
		n += f.Size
	}
	return n, nil
}

// encode returns magic, length, header and header checksum.
func (h *snapHeader) encode() ([]byte, error) {
	j, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(fileMagic)+8+len(j))
	out = append(out, fileMagic...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(j)))
	out = append(out, j...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(j, castagnoli)), nil
}

// maxHeaderBytes bounds a file stream header (a few hundred bytes per
// file).
const maxHeaderBytes = 16 << 20

// readHeader reads a file stream's header after its magic and validates it.
func readHeader(r io.Reader) (*snapHeader, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, fmt.Errorf("%w: header length: %v", ErrBadSnapshot, err)
	}
	hlen := binary.BigEndian.Uint32(n[:])
	if hlen > maxHeaderBytes {
		return nil, fmt.Errorf("%w: header of %d bytes", ErrBadSnapshot, hlen)
	}
	j := make([]byte, hlen)
	if _, err := io.ReadFull(r, j); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrBadSnapshot, err)
	}
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, fmt.Errorf("%w: header checksum: %v", ErrBadSnapshot, err)
	}
	if binary.BigEndian.Uint32(n[:]) != crc32.Checksum(j, castagnoli) {
		return nil, fmt.Errorf("%w: header checksum mismatch", ErrBadSnapshot)
	}
	h := &snapHeader{}
	if err := json.Unmarshal(j, h); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrBadSnapshot, err)
	}
	return h, h.validate()
}

func (h *snapHeader) validate() error {
	if h.Version != streamVersion {
		return fmt.Errorf("%w: stream version %d, want %d", ErrBadSnapshot, h.Version, streamVersion)
	}
	seen := make(map[string]bool, len(h.Files))
	for _, f := range h.Files {
		if !sstName(f.Name) || seen[f.Name] || f.Size <= 0 {
			return fmt.Errorf("%w: file %q of %d bytes", ErrBadSnapshot, f.Name, f.Size)
		}
		seen[f.Name] = true
	}
	return nil
}

// sstName reports whether name is a data file name of a stream: six
// digits and ".sst". Nothing else may be written from a stream, so a
// header cannot name a path outside the snapshot's directory.
func sstName(name string) bool {
	if len(name) != 10 || !strings.HasSuffix(name, ".sst") {
		return false
	}
	for _, c := range name[:6] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// --- markers ---

// marker is the FSMSnapshot of a Machine: the applied state at the time
// raft asked, which is all a local snapshot records.
type marker struct {
	kind Kind
	st   *logpb.AppliedState
}

func (mk *marker) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(encodeMarker(mk.kind, mk.st)); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (mk *marker) Release() {}

func encodeMarker(kind Kind, st *logpb.AppliedState) []byte {
	b, _ := marshal.Marshal(st) // an AppliedState always marshals
	out := append([]byte(markerMagic), byte(kind))
	out = binary.AppendUvarint(out, uint64(len(b)))
	out = append(out, b...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(out, castagnoli))
}

// decodeMarker decodes a whole marker, magic included.
func decodeMarker(b []byte) (Kind, *logpb.AppliedState, error) {
	if len(b) < len(markerMagic)+1+1+4 || string(b[:len(markerMagic)]) != markerMagic {
		return 0, nil, fmt.Errorf("%w: not a marker", ErrBadSnapshot)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return 0, nil, fmt.Errorf("%w: marker checksum mismatch", ErrBadSnapshot)
	}
	kind := Kind(body[len(markerMagic)])
	rest := body[len(markerMagic)+1:]
	n, w := binary.Uvarint(rest)
	if w <= 0 || uint64(len(rest)-w) != n {
		return 0, nil, fmt.Errorf("%w: marker length", ErrBadSnapshot)
	}
	st := &logpb.AppliedState{}
	if err := proto.Unmarshal(rest[w:], st); err != nil {
		return 0, nil, fmt.Errorf("%w: marker state: %v", ErrBadSnapshot, err)
	}
	return kind, st, nil
}

// --- receiving a stream into a directory ---

// Formats of a stored snapshot (SnapStore's meta.json).
const (
	formatLegacy = ""       // raft's FileSnapshotStore layout: state.bin holds a METASNP1 stream
	formatMarker = "marker" // no data: the machine's own state is the snapshot
	formatFiles  = "files"  // the SST files of a file stream, and its header
)

// legacyFile is the record stream of a legacy snapshot (FileSnapshotStore's
// name).
const legacyFile = "state.bin"

// received is what receive stored from a stream.
type received struct {
	format  string
	kind    Kind
	applied *logpb.AppliedState // of the data (the marker's state; the view's; the legacy stream's)
	header  *snapHeader         // formatFiles
	size    int64               // bytes read
}

// receive reads one snapshot stream of any format and stores it in dir
// (which exists and is empty): a file stream's files under their names,
// verified against the header's sizes and checksums and fsynced; a legacy
// stream as state.bin; a marker in memory only. It refuses (ErrBadSnapshot)
// a stream of another kind than want, one whose raft index differs from
// index (when index is not 0), a truncated one, or one with bytes after
// its end. stale, when set, is asked about the snapshot's raft index as
// soon as the stream says it, so that a stale snapshot is refused before
// its data is read.
func receive(r io.Reader, dir string, want Kind, index uint64, stale func(uint64) error) (*received, error) {
	cr := &countingReader{r: r}
	magic := make([]byte, 8)
	if _, err := io.ReadFull(cr, magic); err != nil {
		return nil, fmt.Errorf("%w: magic: %v", ErrBadSnapshot, err)
	}
	var rc *received
	var err error
	switch string(magic) {
	case markerMagic:
		rc, err = receiveMarker(cr, magic, want)
	case fileMagic:
		rc, err = receiveFiles(cr, dir, want, index, stale)
	case snapshotMagic:
		rc, err = receiveLegacy(cr, magic, dir, want, stale)
	default:
		return nil, fmt.Errorf("%w: unknown magic %q", ErrBadSnapshot, magic)
	}
	if err != nil {
		return nil, err
	}
	rc.size = cr.n
	return rc, nil
}

// receiveMarker reads a marker; a marker is this replica's own, never
// stale when stored (Restore checks one it is handed).
func receiveMarker(r io.Reader, magic []byte, want Kind) (*received, error) {
	rest, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%w: marker: %v", ErrBadSnapshot, err)
	}
	kind, st, err := decodeMarker(append(magic, rest...))
	if err != nil {
		return nil, err
	}
	if kind != want {
		return nil, fmt.Errorf("%w: marker of a %s group, this is %s", ErrBadSnapshot, kind, want)
	}
	return &received{format: formatMarker, kind: kind, applied: st}, nil
}

func receiveFiles(r io.Reader, dir string, want Kind, index uint64, stale func(uint64) error) (*received, error) {
	h, err := readHeader(r)
	if err != nil {
		return nil, err
	}
	if h.Kind != want {
		return nil, fmt.Errorf("%w: snapshot of a %s group, this is %s", ErrBadSnapshot, h.Kind, want)
	}
	if index != 0 && h.Index != index {
		return nil, fmt.Errorf("%w: stream of the snapshot at index %d, raft sent it as %d", ErrBadSnapshot, h.Index, index)
	}
	rc := &received{format: formatFiles, kind: h.Kind, applied: h.Applied.state(), header: h}
	if stale != nil {
		if err := stale(h.Index); err != nil {
			return rc, err
		}
	}
	for _, f := range h.Files {
		if err := receiveFile(r, dir, f); err != nil {
			return nil, err
		}
	}
	if err := expectEOF(r); err != nil {
		return nil, err
	}
	return rc, nil
}

// receiveFile copies one file of a stream to path and checks it; with
// dir "" it only checks it (CheckBackup).
func receiveFile(r io.Reader, dir string, f snapFile) error {
	sum := crc32.New(castagnoli)
	if dir == "" {
		n, err := io.Copy(sum, io.LimitReader(r, f.Size))
		return checkReceived(f, n, sum.Sum32(), err)
	}
	out, err := os.OpenFile(filepath.Join(dir, f.Name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("sm: snapshot file: %w", err)
	}
	defer out.Close()
	n, err := io.Copy(io.MultiWriter(out, sum), io.LimitReader(r, f.Size))
	if err := checkReceived(f, n, sum.Sum32(), err); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("sm: snapshot file %s: %w", f.Name, err)
	}
	return out.Close()
}

// checkReceived checks what was read of file f: n bytes whose CRC-32C is
// sum, until err.
func checkReceived(f snapFile, n int64, sum uint32, err error) error {
	if err != nil {
		return fmt.Errorf("sm: snapshot file %s: %w", f.Name, err)
	}
	if n != f.Size {
		return fmt.Errorf("%w: file %s: %d of %d bytes", ErrBadSnapshot, f.Name, n, f.Size)
	}
	if sum != f.CRC32C {
		return fmt.Errorf("%w: file %s: checksum mismatch", ErrBadSnapshot, f.Name)
	}
	return nil
}

func expectEOF(r io.Reader) error {
	var b [1]byte
	n, err := io.ReadFull(r, b[:])
	if n > 0 {
		return fmt.Errorf("%w: bytes after the end", ErrBadSnapshot)
	}
	if !errors.Is(err, io.EOF) {
		return fmt.Errorf("sm: snapshot: %w", err)
	}
	return nil
}

// receiveLegacy stores a METASNP1 stream as state.bin. Only its header is
// read on the way: restoreLegacy checks the records.
func receiveLegacy(r io.Reader, magic []byte, dir string, want Kind, stale func(uint64) error) (*received, error) {
	path := filepath.Join(dir, legacyFile)
	out, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("sm: snapshot file: %w", err)
	}
	defer out.Close()
	bw := bufio.NewWriterSize(out, 1<<20)
	br := bufio.NewReaderSize(io.TeeReader(r, bw), 64<<10)
	_, _ = bw.Write(magic)
	kind, st, err := readLegacyHeader(br)
	if err != nil {
		return nil, err
	}
	if kind != want {
		return nil, fmt.Errorf("%w: snapshot of a %s group, this is %s", ErrBadSnapshot, kind, want)
	}
	rc := &received{format: formatLegacy, kind: kind, applied: st}
	if stale != nil {
		if err := stale(st.Index); err != nil {
			return rc, err
		}
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return nil, fmt.Errorf("sm: snapshot: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("sm: snapshot file: %w", err)
	}
	if err := out.Sync(); err != nil {
		return nil, fmt.Errorf("sm: snapshot file: %w", err)
	}
	return rc, out.Close()
}

// readLegacyHeader reads the kind and applied state of a METASNP1 stream
// whose magic has been read.
func readLegacyHeader(br *bufio.Reader) (Kind, *logpb.AppliedState, error) {
	kind, err := br.ReadByte()
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	stb, err := readChunk(br, 1<<20)
	if err != nil {
		return 0, nil, err
	}
	st := &logpb.AppliedState{}
	if err := proto.Unmarshal(stb, st); err != nil {
		return 0, nil, fmt.Errorf("%w: state: %v", ErrBadSnapshot, err)
	}
	return Kind(kind), st, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// --- writing SST files ---

// defaultFileBytes is the target of uncompressed key and value bytes per
// SST file of a file stream.
const defaultFileBytes = 64 << 20

// sstSet writes ascending keys into numbered SST files in dir, starting a
// new file once the current one holds about fileBytes of keys and values.
type sstSet struct {
	db        *rocks.DB
	dir       string
	fileBytes int64

	w     *rocks.SSTWriter
	bytes int64
	files []snapFile
}

func (s *sstSet) put(k, v []byte) error {
	if s.w == nil {
		name := fmt.Sprintf("%06d.sst", len(s.files)+1)
		w, err := s.db.NewSSTWriter(filepath.Join(s.dir, name))
		if err != nil {
			return err
		}
		s.w, s.bytes = w, 0
		s.files = append(s.files, snapFile{Name: name})
	}
	if err := s.w.Put(k, v); err != nil {
		return err
	}
	s.bytes += int64(len(k) + len(v))
	if s.bytes >= s.fileBytes {
		return s.finish()
	}
	return nil
}

// finish completes the current file, if any, and checksums it.
func (s *sstSet) finish() error {
	if s.w == nil {
		return nil
	}
	defer func() { s.w.Close(); s.w = nil }()
	size, err := s.w.Finish()
	if err != nil {
		return err
	}
	f := &s.files[len(s.files)-1]
	f.Size = size
	f.CRC32C, err = fileCRC(filepath.Join(s.dir, f.Name), size)
	return err
}

func (s *sstSet) close() {
	if s.w != nil {
		s.w.Close()
		s.w = nil
	}
}

// fileCRC returns the CRC-32C of the file at path, which must hold exactly
// size bytes.
func fileCRC(path string, size int64) (uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("sm: snapshot file: %w", err)
	}
	defer f.Close()
	sum := crc32.New(castagnoli)
	n, err := io.Copy(sum, f)
	if err != nil {
		return 0, fmt.Errorf("sm: snapshot file: %w", err)
	}
	if n != size {
		return 0, fmt.Errorf("%w: file %s: %d bytes, want %d", ErrBadSnapshot, filepath.Base(path), n, size)
	}
	return sum.Sum32(), nil
}

// export writes the group's data as SST files into dir (which exists and is
// empty) from ONE RocksDB view, and returns the file stream header for
// them, tagged with raft's snapshot index and term. The view is taken now,
// so its applied state may be newer than the snapshot's (see the fuzzy
// snapshot note at the top of this file); it must not be older than
// minApplied, the applied state the snapshot's marker recorded (the data
// would then be behind raft's snapshot, which only a lost write can cause).
// Reads go around the block cache.
func (m *Machine) export(dir string, index, term, minApplied uint64, fileBytes int64) (*snapHeader, error) {
	h, err := m.exportView(dir, minApplied, fileBytes, nil)
	if err != nil {
		return nil, err
	}
	h.Index, h.Term = index, term
	return h, nil
}

// exportView writes the group's data as SST files into dir from one view
// (see export) and returns their header, with raft's index and term left
// 0; when hash is set, it also digests every key and value written, as
// Hash does, into it.
func (m *Machine) exportView(dir string, minApplied uint64, fileBytes int64, hash *StateHash) (*snapHeader, error) {
	if fileBytes <= 0 {
		fileBytes = defaultFileBytes
	}
	// The view is taken under the restore lock, so that it never sees a
	// restore half done; the lock is not held while the files are written.
	m.restoreMu.RLock()
	sn := m.db.NewSnapshot()
	m.restoreMu.RUnlock()
	defer sn.Close()
	get := func(k []byte) ([]byte, bool, error) { return sn.Get(m.space, k) }
	if _, restoring, err := get(keyRestoring); err != nil || restoring {
		return nil, errors.Join(err, errors.New("sm: export: a snapshot restore is incomplete; the data is not whole"))
	}
	st, err := m.loadApplied(get)
	if err != nil {
		return nil, err
	}
	if st.Index < minApplied {
		return nil, fmt.Errorf("sm: export: the data is at index %d, behind the snapshot's %d", st.Index, minApplied)
	}
	set := &sstSet{db: m.db, dir: dir, fileBytes: fileBytes}
	defer set.close()
	var hs *hasher
	if hash != nil {
		hs = newHasher()
	}
	var werr error
	err = sn.Scan(m.space, userStart, userEnd, func(k, v []byte) bool {
		if hs != nil {
			hs.add(k, v)
		}
		werr = set.put(k, v)
		return werr == nil
	})
	if err = errors.Join(err, werr); err != nil {
		return nil, fmt.Errorf("sm: export: %w", err)
	}
	if err := set.finish(); err != nil {
		return nil, fmt.Errorf("sm: export: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	if hs != nil {
		*hash = hs.sum(st)
	}
	own, _, err := get(keyOwnership)
	if err != nil {
		return nil, fmt.Errorf("sm: export: %w", err)
	}
	return &snapHeader{Version: streamVersion, Kind: m.kind, Applied: toJSON(st), Files: set.files, Ownership: own}, nil
}

// --- Machine: Snapshot and Restore ---

// Snapshot returns the machine's marker: the applied state raft's
// snapshot stands for. It runs on the FSM goroutine, so that state is the
// one raft's index refers to. There is nothing to copy: the data stays in
// RocksDB, and SnapStore produces it from there when a follower needs it.
// It fails while a restore is incomplete (the data is not whole).
func (m *Machine) Snapshot() (raft.FSMSnapshot, error) {
	incomplete, err := m.RestoreIncomplete()
	if err != nil {
		return nil, err
	}
	if incomplete {
		return nil, errors.New("sm: snapshot: a snapshot restore is incomplete")
	}
	if h := m.halted.Load(); h != nil {
		// Raft would label it with an index this state has not reached.
		return nil, fmt.Errorf("sm: snapshot: %w", h)
	}
	return &marker{kind: m.kind, st: &logpb.AppliedState{Index: m.index.Load(), Term: m.term.Load(), Revision: m.rev.Load()}}, nil
}

// SnapshotStats are the counts of a replica's snapshot transfers since it
// was opened: the snapshots exported from its RocksDB files to be sent (to
// a lagging follower or a new replica), and those it restored (installed)
// or refused, with the time each took and their bytes.
type SnapshotStats struct {
	Exports        uint64
	ExportSeconds  float64
	ExportBytes    uint64
	Restores       uint64
	RestoreSeconds float64
	RestoreBytes   uint64
	Refused        uint64
}

// snapCounters hold SnapshotStats as they are counted.
type snapCounters struct {
	exports, exportNanos, exportBytes    atomic.Uint64
	restores, restoreNanos, restoreBytes atomic.Uint64
	refused                              atomic.Uint64
}

func (c *snapCounters) exported(took time.Duration, bytes int64) {
	c.exports.Add(1)
	c.exportNanos.Add(uint64(took))
	c.exportBytes.Add(uint64(max(bytes, 0)))
}

func (c *snapCounters) restored(took time.Duration, bytes int64) {
	c.restores.Add(1)
	c.restoreNanos.Add(uint64(took))
	c.restoreBytes.Add(uint64(max(bytes, 0)))
}

// SnapshotStats returns the counts so far.
func (m *Machine) SnapshotStats() SnapshotStats {
	c := &m.snaps
	return SnapshotStats{
		Exports: c.exports.Load(), ExportSeconds: time.Duration(c.exportNanos.Load()).Seconds(), ExportBytes: c.exportBytes.Load(),
		Restores: c.restores.Load(), RestoreSeconds: time.Duration(c.restoreNanos.Load()).Seconds(), RestoreBytes: c.restoreBytes.Load(),
		Refused: c.refused.Load(),
	}
}

// restoreOutcome tells a snapshot source how Restore ended.
type restoreOutcome int

const (
	restoreRefused  restoreOutcome = iota // nothing changed: stale, corrupt, or of another kind
	restoreFailed                         // the data was changed and is not whole: restore again
	restoreComplete                       // the snapshot is the machine's state now
)

// snapSourceOf is implemented by the readers SnapStore.Open returns, which
// hand Restore their stored files instead of a stream to be copied.
type snapSourceOf interface {
	source() *snapSource
}

// stale refuses, with ErrStaleSnapshot, a snapshot whose raft index is
// below the applied state, unless a restore is incomplete (the stored
// state is then not whole, and any snapshot may replace it).
func (m *Machine) stale(index uint64) error {
	incomplete, err := m.RestoreIncomplete()
	if err != nil {
		return fmt.Errorf("sm: restore: %w", err)
	}
	if applied := m.index.Load(); index < applied && !incomplete {
		return fmt.Errorf("%w: snapshot at index %d, this replica applied %d", ErrStaleSnapshot, index, applied)
	}
	return nil
}

// Restore replaces the group's data wholly with a snapshot: one of
// SnapStore's (its stored files are ingested in place) or any stream in
// one of the formats above (staged into files first).
//
// Nothing changes until the snapshot is known whole: its files' sizes and
// checksums (a legacy stream's record checksum) are verified first, and a
// corrupt, truncated or foreign snapshot returns ErrBadSnapshot with the
// old state untouched. Then, crash-safely: a restoring marker is written
// (synced); the data is cleared (synced range deletions); the files are
// ingested in one atomic step together with a small file that writes the
// new applied state and deletes the restoring marker. A crash before the
// ingestion leaves the marker, and the node restores the snapshot again at
// start (SnapStore.NeedsRestore; the snapshot's files are kept until a
// restore completes). A crash after it leaves the restore complete.
//
// It refuses (ErrStaleSnapshot, nothing changed) a snapshot whose raft
// index is below the state already applied. hashicorp/raft installs
// whatever snapshot a leader sends and then sets its applied index to the
// snapshot's, even below its own; a leader that fell back to an old
// snapshot (its view of the follower's log ran below its own first entry,
// e.g. after the follower compacted entries it had just received) sends
// one. Installed, it would rewind the state, and raft would panic ("log
// not found") re-applying entries this replica has already compacted away
// (seen in a chaos run, a re-added member: hashicorp/raft issues #85 and
// #697). Refused, raft answers the leader with an error and keeps its
// state; the leader retries, and the handler set with OnStaleSnapshot can
// ask it for a fresh snapshot so that the retry carries one this replica
// can use.
func (m *Machine) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	start := time.Now()
	var src *snapSource
	// raft hands Restore the store's reader wrapped (to count its bytes).
	inner := io.ReadCloser(rc)
	for {
		w, ok := inner.(raft.ReadCloserWrapper)
		if !ok {
			break
		}
		inner = w.WrappedReadCloser()
	}
	if s, ok := inner.(snapSourceOf); ok {
		src = s.source()
	}
	outcome := restoreRefused
	if src != nil {
		defer func() { src.finish(outcome) }()
	}
	var st *logpb.AppliedState
	var err error
	if src != nil {
		st, outcome, err = m.restoreSource(src)
	} else {
		st, outcome, err = m.restoreStream(rc)
	}
	if outcome == restoreRefused {
		m.snaps.refused.Add(1)
	}
	var se *staleError
	if errors.As(err, &se) {
		m.refusedStale(se)
		return err
	}
	if err != nil {
		return err
	}
	var bytes int64
	if src != nil && src.header != nil {
		bytes, _ = src.header.streamSize()
	}
	m.snaps.restored(time.Since(start), bytes)
	m.log.Info("restored snapshot", "index", st.Index, "revision", st.Revision)
	return nil
}

// staleError carries the index of a refused snapshot to Restore's
// handler; it wraps ErrStaleSnapshot.
type staleError struct {
	index uint64
	err   error
}

func (e *staleError) Error() string { return e.err.Error() }
func (e *staleError) Unwrap() error { return e.err }

func (m *Machine) staleCheck(index uint64) error {
	if err := m.stale(index); err != nil {
		if errors.Is(err, ErrStaleSnapshot) {
			return &staleError{index: index, err: err}
		}
		return err
	}
	return nil
}

// restoreSource restores one of SnapStore's snapshots: received files or
// a marker's export (formatFiles), or a legacy state.bin.
func (m *Machine) restoreSource(src *snapSource) (*logpb.AppliedState, restoreOutcome, error) {
	switch src.format {
	case formatFiles:
		h := src.header
		if h.Kind != m.kind {
			return nil, restoreRefused, fmt.Errorf("%w: snapshot of a %s group, this is %s", ErrBadSnapshot, h.Kind, m.kind)
		}
		if err := m.staleCheck(h.Index); err != nil {
			return nil, restoreRefused, err
		}
		// The files were checked when they arrived; they are checked again
		// because they have waited on disk since (perhaps across a crash).
		for _, f := range h.Files {
			sum, err := fileCRC(filepath.Join(src.dir, f.Name), f.Size)
			if err != nil {
				return nil, restoreRefused, errors.Join(ErrBadSnapshot, err)
			}
			if sum != f.CRC32C {
				return nil, restoreRefused, fmt.Errorf("%w: file %s: checksum mismatch", ErrBadSnapshot, f.Name)
			}
		}
		return m.install(src.dir, h.Files, h.Applied.state())
	case formatLegacy:
		f, err := os.Open(filepath.Join(src.dir, legacyFile))
		if err != nil {
			return nil, restoreRefused, fmt.Errorf("sm: restore: %w", err)
		}
		defer f.Close()
		return m.restoreStream(f)
	default:
		return nil, restoreRefused, fmt.Errorf("%w: snapshot format %q", ErrBadSnapshot, src.format)
	}
}

// restoreStream stages a stream into files (verifying it whole), then
// installs them. A marker stream carries no data: it is refused as stale
// when it is, and as a bad snapshot otherwise.
func (m *Machine) restoreStream(r io.Reader) (*logpb.AppliedState, restoreOutcome, error) {
	dir, err := m.stagingDir()
	if err != nil {
		return nil, restoreRefused, err
	}
	defer os.RemoveAll(dir)
	br := bufio.NewReaderSize(r, 1<<20)
	if magic, err := br.Peek(len(snapshotMagic)); err == nil && string(magic) == snapshotMagic {
		files, st, err := m.stageLegacy(br, dir)
		if err != nil {
			return nil, restoreRefused, err
		}
		return m.install(dir, files, st)
	}
	rc, err := receive(br, dir, m.kind, 0, m.staleCheck)
	if err != nil {
		return nil, restoreRefused, err
	}
	if rc.format == formatMarker {
		if err := m.staleCheck(rc.applied.Index); err != nil {
			return nil, restoreRefused, err
		}
		return nil, restoreRefused, fmt.Errorf("%w: a marker holds no data", ErrBadSnapshot)
	}
	return m.install(dir, rc.header.Files, rc.applied)
}

// stagingDir returns a new empty directory for staging a restore: under
// the store's work directory when a SnapStore serves the machine (the
// same file system as the database, so ingestion links rather than
// copies), else under the system's temporary directory.
func (m *Machine) stagingDir() (string, error) { return m.workSubdir("restore") }

// workSubdir makes a new empty directory named for what (restore,
// backup) where stagingDir says.
func (m *Machine) workSubdir(what string) (string, error) {
	parent := ""
	if p := m.workDir.Load(); p != nil {
		parent = *p
	}
	dir, err := os.MkdirTemp(parent, what+"-")
	if err != nil {
		return "", fmt.Errorf("sm: %s: %w", what, err)
	}
	return dir, nil
}

// stageLegacy converts a METASNP1 stream into SST files in dir, checking
// its kind, staleness, key order, record count and checksum; it returns
// the files and the stream's applied state.
func (m *Machine) stageLegacy(br *bufio.Reader, dir string) ([]snapFile, *logpb.AppliedState, error) {
	if _, err := br.Discard(len(snapshotMagic)); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	kind, st, err := readLegacyHeader(br)
	if err != nil {
		return nil, nil, err
	}
	if kind != m.kind {
		return nil, nil, fmt.Errorf("%w: snapshot of a %s group, this is %s", ErrBadSnapshot, kind, m.kind)
	}
	if err := m.staleCheck(st.Index); err != nil {
		return nil, nil, err
	}
	set := &sstSet{db: m.db, dir: dir, fileBytes: defaultFileBytes}
	defer set.close()
	sum := fnv.New64a()
	var count uint64
	for {
		k, err := readRecordPart(br, sum, 1<<20, true)
		if err != nil {
			return nil, nil, err
		}
		if len(k) == 0 {
			break
		}
		v, err := readRecordPart(br, sum, 64<<20, false)
		if err != nil {
			return nil, nil, err
		}
		if k[0] < prefixUserMin {
			return nil, nil, fmt.Errorf("%w: reserved key in stream", ErrBadSnapshot)
		}
		if err := set.put(k, v); err != nil {
			return nil, nil, errors.Join(ErrBadSnapshot, err) // keys out of order
		}
		count++
	}
	n, err := binary.ReadUvarint(br)
	if err != nil || n != count {
		return nil, nil, fmt.Errorf("%w: record count %d, trailer says %d", ErrBadSnapshot, count, n)
	}
	var want [8]byte
	if _, err := io.ReadFull(br, want[:]); err != nil {
		return nil, nil, fmt.Errorf("%w: checksum: %v", ErrBadSnapshot, err)
	}
	if binary.BigEndian.Uint64(want[:]) != sum.Sum64() {
		return nil, nil, fmt.Errorf("%w: checksum mismatch", ErrBadSnapshot)
	}
	if err := expectEOF(br); err != nil {
		return nil, nil, err
	}
	if err := set.finish(); err != nil {
		return nil, nil, err
	}
	return set.files, st, nil
}

// install replaces the data with the verified files in dir and st (see
// Restore for the sequence and why it is crash-safe). The files are moved
// into the database.
func (m *Machine) install(dir string, files []snapFile, st *logpb.AppliedState) (*logpb.AppliedState, restoreOutcome, error) {
	// The last file written: the new applied state, and the deletion of
	// the restoring marker, so that both land atomically with the data.
	metaPath := filepath.Join(dir, "meta.sst")
	if err := os.Remove(metaPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, restoreRefused, fmt.Errorf("sm: restore: %w", err)
	}
	w, err := m.db.NewSSTWriter(metaPath)
	if err != nil {
		return nil, restoreRefused, fmt.Errorf("sm: restore: %w", err)
	}
	stb, err := marshal.Marshal(st)
	if err == nil {
		err = w.Put(keyApplied, stb) // keyApplied < keyRestoring
	}
	if err == nil {
		err = w.Delete(keyRestoring)
	}
	if err == nil {
		_, err = w.Finish()
	}
	w.Close()
	if err != nil {
		return nil, restoreRefused, fmt.Errorf("sm: restore: %w", err)
	}
	paths := make([]string, 0, len(files)+1)
	for _, f := range files {
		paths = append(paths, filepath.Join(dir, f.Name))
	}
	paths = append(paths, metaPath)

	m.restoreMu.Lock()
	defer m.restoreMu.Unlock()
	if err := m.space.Put(keyRestoring, []byte{1}, true); err != nil {
		return nil, restoreRefused, fmt.Errorf("sm: restore: mark: %w", err)
	}
	// From here on the old state is being destroyed: a failure leaves the
	// marker, and the restore must run again.
	if err := m.space.DeleteRange([]byte{}, keyRestoring, true); err != nil {
		return nil, restoreFailed, fmt.Errorf("sm: restore: clear: %w", err)
	}
	if err := m.space.DeleteRange(append(bytes.Clone(keyRestoring), 0), nil, true); err != nil {
		return nil, restoreFailed, fmt.Errorf("sm: restore: clear: %w", err)
	}
	if m.afterClear != nil {
		if err := m.afterClear(); err != nil {
			return nil, restoreFailed, err
		}
	}
	if err := m.space.Ingest(paths); err != nil {
		return nil, restoreFailed, fmt.Errorf("sm: restore: %w", err)
	}
	if err := m.loadOwnership(m.space.Get); err != nil {
		return nil, restoreFailed, err
	}
	m.index.Store(st.Index)
	m.term.Store(st.Term)
	m.rev.Store(st.Revision)
	if h := m.halted.Load(); h != nil && st.Index >= h.Index {
		// Another replica applied the entry this one could not.
		m.halted.CompareAndSwap(h, nil)
		m.log.Info("a snapshot past the entry that halted the group was restored; applying again", "halted_at", h.Index, "snapshot", st.Index)
	}
	m.notify()
	return st, restoreComplete, nil
}

// syncDir fsyncs a directory, so that the entries created in it survive a
// crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sm: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sm: sync %s: %w", dir, err)
	}
	return nil
}

func readChunk(br *bufio.Reader, limit uint64) ([]byte, error) {
	n, err := binary.ReadUvarint(br)
	if err != nil || n > limit {
		return nil, fmt.Errorf("%w: length", ErrBadSnapshot)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	return b, nil
}

// readRecordPart reads one length-prefixed part of a METASNP1 record,
// feeding the exact bytes into the checksum. For a key (isKey), length 0
// is the end marker, which the checksum does not cover; a value may be
// empty.
func readRecordPart(br *bufio.Reader, sum hash.Hash64, limit uint64, isKey bool) ([]byte, error) {
	n, err := binary.ReadUvarint(br)
	if err != nil || n > limit {
		return nil, fmt.Errorf("%w: record length", ErrBadSnapshot)
	}
	var lb []byte
	lb = binary.AppendUvarint(lb, n)
	if n == 0 && isKey {
		return nil, nil
	}
	_, _ = sum.Write(lb)
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	_, _ = sum.Write(b)
	return b, nil
}
