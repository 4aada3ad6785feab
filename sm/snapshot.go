package sm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"io"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rocks"
	"github.com/metamq/meta/sm/logpb"
)

// Snapshot stream format (version 1). All integers are uvarints unless said
// otherwise.
//
//	magic    8 bytes "METASNP1"
//	kind     1 byte (Kind)
//	state    length, then logpb.AppliedState (index, term, revision)
//	records  repeated: key length (> 0), key, value length, value
//	end      a key length of 0
//	count    number of records
//	checksum 8 bytes big-endian: FNV-1a 64 over every record's bytes as
//	         written (lengths included)
//
// Records are the group's data keys (everything from prefixUserMin up) in
// ascending order, read from one RocksDB snapshot taken on the FSM
// goroutine, so they match the applied state in the header. The reserved
// 0x00 keys are never streamed: the receiver writes its own.
const snapshotMagic = "METASNP1"

// ErrBadSnapshot is returned when a snapshot stream is malformed.
var ErrBadSnapshot = errors.New("sm: bad snapshot")

// ErrStaleSnapshot is returned by Restore for a snapshot older than the
// state this replica has already applied (see Machine.Restore).
var ErrStaleSnapshot = errors.New("sm: snapshot older than the applied state")

type snapshot struct {
	m  *Machine
	sn *rocks.Snapshot
	st *logpb.AppliedState
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) write(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	if _, err := bw.WriteString(snapshotMagic); err != nil {
		return err
	}
	if err := bw.WriteByte(byte(s.m.kind)); err != nil {
		return err
	}
	st, err := marshal.Marshal(s.st)
	if err != nil {
		return err
	}
	var hdr []byte
	hdr = binary.AppendUvarint(hdr, uint64(len(st)))
	if _, err := bw.Write(append(hdr, st...)); err != nil {
		return err
	}
	sum := fnv.New64a()
	var count uint64
	var werr error
	var buf []byte
	err = s.sn.Scan(s.m.space, userStart, userEnd, func(k, v []byte) bool {
		buf = binary.AppendUvarint(buf[:0], uint64(len(k)))
		buf = append(buf, k...)
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		buf = append(buf, v...)
		_, _ = sum.Write(buf)
		if _, werr = bw.Write(buf); werr != nil {
			return false
		}
		count++
		return true
	})
	if err != nil {
		return fmt.Errorf("sm: snapshot scan: %w", err)
	}
	if werr != nil {
		return werr
	}
	tail := binary.AppendUvarint([]byte{0}, count)
	tail = binary.BigEndian.AppendUint64(tail, sum.Sum64())
	if _, err := bw.Write(tail); err != nil {
		return err
	}
	return bw.Flush()
}

func (s *snapshot) Release() { s.sn.Close() }

// restoreBatchBytes bounds a restore write batch.
const restoreBatchBytes = 4 << 20

// restore replaces the data with the stream's records. The sequence is
// crash-safe: the data is cleared, then a restoring marker is written
// (synced), then the records, then the applied state together with the
// marker's removal (synced). A node that finds the marker, or an applied
// index below its latest snapshot, at start restores that snapshot again
// (metanode decides; see RestoreIncomplete).
func (m *Machine) restore(r io.Reader) (*logpb.AppliedState, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return nil, fmt.Errorf("%w: missing magic", ErrBadSnapshot)
	}
	kind, err := br.ReadByte()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	if Kind(kind) != m.kind {
		return nil, fmt.Errorf("%w: snapshot of a %s group, this is %s", ErrBadSnapshot, Kind(kind), m.kind)
	}
	stb, err := readChunk(br, 1<<20)
	if err != nil {
		return nil, err
	}
	st := &logpb.AppliedState{}
	if err := proto.Unmarshal(stb, st); err != nil {
		return nil, fmt.Errorf("%w: state: %v", ErrBadSnapshot, err)
	}
	// Nothing has been changed yet: a stale snapshot leaves the state as
	// it was. After an interrupted restore the stored state is not whole,
	// so any snapshot may replace it.
	incomplete, err := m.RestoreIncomplete()
	if err != nil {
		return nil, fmt.Errorf("sm: restore: %w", err)
	}
	if applied := m.index.Load(); st.Index < applied && !incomplete {
		return st, fmt.Errorf("%w: snapshot at index %d, this replica applied %d", ErrStaleSnapshot, st.Index, applied)
	}

	if err := m.space.DeleteAll(true); err != nil {
		return nil, fmt.Errorf("sm: restore: clear: %w", err)
	}
	if err := m.space.Put(keyRestoring, []byte{1}, true); err != nil {
		return nil, fmt.Errorf("sm: restore: mark: %w", err)
	}
	sum := fnv.New64a()
	var count uint64
	b := m.db.NewBatch()
	defer func() { b.Close() }()
	pending := 0
	for {
		k, err := readRecordPart(br, sum, 1<<20, true)
		if err != nil {
			return nil, err
		}
		if len(k) == 0 {
			break
		}
		v, err := readRecordPart(br, sum, 64<<20, false)
		if err != nil {
			return nil, err
		}
		if k[0] < prefixUserMin {
			return nil, fmt.Errorf("%w: reserved key in stream", ErrBadSnapshot)
		}
		b.Put(m.space, k, v)
		count++
		pending += len(k) + len(v)
		if pending >= restoreBatchBytes {
			if err := b.Commit(false); err != nil {
				return nil, fmt.Errorf("sm: restore: write: %w", err)
			}
			b.Close()
			b = m.db.NewBatch()
			pending = 0
		}
	}
	n, err := binary.ReadUvarint(br)
	if err != nil || n != count {
		return nil, fmt.Errorf("%w: record count %d, trailer says %d", ErrBadSnapshot, count, n)
	}
	var want [8]byte
	if _, err := io.ReadFull(br, want[:]); err != nil {
		return nil, fmt.Errorf("%w: checksum: %v", ErrBadSnapshot, err)
	}
	if binary.BigEndian.Uint64(want[:]) != sum.Sum64() {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrBadSnapshot)
	}
	if err := putProto(b, m.space, keyApplied, st); err != nil {
		return nil, err
	}
	b.Delete(m.space, keyRestoring)
	if err := b.Commit(true); err != nil {
		return nil, fmt.Errorf("sm: restore: commit: %w", err)
	}
	return st, nil
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

// readRecordPart reads one length-prefixed part of a record, feeding the
// exact bytes into the checksum. For a key (isKey), length 0 is the end
// marker, which the checksum does not cover; a value may be empty.
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
