package sm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/sm/logpb"
)

// Backups
//
// A group's backup is a file stream (METASNP2, see snapshot.go) of its
// data from ONE RocksDB view, exactly what a leader sends a follower, plus
// the state hash of that same view (computed while the files are written,
// over the same keys and values). Its header's raft index and term are
// the view's applied index and term. A backup is restored into a NEW
// cluster (RestoreBackup): the group's raft log starts again from 1 there,
// so the restored state keeps the backup's revision (revisions are part of
// the data: mod revisions, the change log) but not its applied index.

// Backup is one group's state exported for a backup: the files of one
// view, in a directory of its own until Close.
type Backup struct {
	// Hash is the state hash of the view the files hold (its Index and
	// Revision are the view's applied index and revision).
	Hash StateHash
	// Term is the raft term of the view's applied index.
	Term uint64
	// Size is the number of bytes Reader streams.
	Size int64

	dir    string
	header *snapHeader
	chain  *fileChain
}

// Backup exports the group's current state (one view, taken now) into a
// new directory under the snapshot store's work directory (the system's
// temporary directory without a store). Reads go around the block cache.
// The caller makes the view linearizable by waiting for a read index
// before it calls Backup, and Closes the backup.
func (m *Machine) Backup() (*Backup, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	dir, err := m.workSubdir("backup")
	if err != nil {
		return nil, err
	}
	b := &Backup{dir: dir}
	h, err := m.exportView(dir, 0, 0, &b.Hash)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	h.Index, h.Term = h.Applied.Index, h.Applied.Term
	b.header, b.Term = h, h.Applied.Term
	if b.Size, err = h.streamSize(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return b, nil
}

// Reader returns the backup's stream (call it once).
func (b *Backup) Reader() (io.Reader, error) {
	hb, err := b.header.encode()
	if err != nil {
		return nil, err
	}
	b.chain = &fileChain{dir: b.dir, files: b.header.Files}
	return io.MultiReader(bytes.NewReader(hb), b.chain), nil
}

// Close deletes the backup's files. Safe to call twice.
func (b *Backup) Close() error {
	err := b.chain.close()
	return errors.Join(err, os.RemoveAll(b.dir))
}

// BackupInfo is what a backup stream's header says.
type BackupInfo struct {
	Kind    Kind
	Applied *logpb.AppliedState
	Files   int
	Bytes   int64 // of the whole stream
	// Ownership is the group's ownership record at the backup's view
	// (nil: none, as in a metadata group).
	Ownership *logpb.Ownership
}

// CheckBackup reads a whole backup stream of a group of kind want and
// verifies it (magic, header checksum, every file's size and CRC-32C, no
// bytes after the end) without writing anything: ErrBadSnapshot says what
// is wrong.
func CheckBackup(r io.Reader, want Kind) (*BackupInfo, error) {
	rc, err := readBackup(r, "", want)
	if err != nil {
		return nil, err
	}
	info := &BackupInfo{Kind: rc.kind, Applied: rc.applied, Files: len(rc.header.Files), Bytes: rc.size}
	if own := rc.header.Ownership; own != nil {
		info.Ownership = &logpb.Ownership{}
		if err := proto.Unmarshal(own, info.Ownership); err != nil {
			return nil, fmt.Errorf("%w: ownership: %v", ErrBadSnapshot, err)
		}
	}
	return info, nil
}

// readBackup reads a backup stream into dir ("": verify only).
func readBackup(r io.Reader, dir string, want Kind) (*received, error) {
	cr := &countingReader{r: r}
	magic := make([]byte, len(fileMagic))
	if _, err := io.ReadFull(cr, magic); err != nil {
		return nil, fmt.Errorf("%w: magic: %v", ErrBadSnapshot, err)
	}
	if string(magic) != fileMagic {
		return nil, fmt.Errorf("%w: magic %q, want %q", ErrBadSnapshot, magic, fileMagic)
	}
	rc, err := receiveFiles(cr, dir, want, 0, nil)
	if err != nil {
		return nil, err
	}
	rc.size = cr.n
	return rc, nil
}

// RestoreBackup makes a backup stream the state of this machine, which
// must be new (nothing applied: a group of a data directory being laid
// out for a new cluster). The stream is staged and verified whole first;
// the state is then installed as Restore installs a snapshot, with the
// backup's revision and applied index 0 (the new cluster's raft log
// starts at 1). It returns the state hash of what was installed, taken
// before anything else changes, so that the caller can compare it with
// the one recorded at backup time.
//
// A metadata group forgets its cluster record, members, directory and
// directory version: they belong to the cluster the backup was taken
// from, and the new cluster's first metadata leader records its own, as
// it does in any new cluster.
func (m *Machine) RestoreBackup(r io.Reader) (StateHash, error) {
	if m.closed.Load() {
		return StateHash{}, ErrClosed
	}
	if applied := m.index.Load(); applied != 0 || m.rev.Load() != 0 {
		return StateHash{}, fmt.Errorf("sm: restore backup: group %s is not new (applied index %d)", m.group, applied)
	}
	dir, err := m.stagingDir()
	if err != nil {
		return StateHash{}, err
	}
	defer os.RemoveAll(dir)
	rc, err := readBackup(bufio.NewReaderSize(r, 1<<20), dir, m.kind)
	if err != nil {
		return StateHash{}, err
	}
	st := &logpb.AppliedState{Revision: rc.applied.GetRevision()}
	if _, _, err := m.install(dir, rc.header.Files, st); err != nil {
		return StateHash{}, err
	}
	h, err := m.Hash()
	if err != nil {
		return StateHash{}, err
	}
	if m.kind == KindMetadata {
		p := []byte{prefixCluster}
		if err := m.space.DeleteRange(p, prefixEnd(p), true); err != nil {
			return StateHash{}, fmt.Errorf("sm: restore backup: forget the cluster record: %w", err)
		}
	}
	return h, nil
}
