package client

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/metamq/meta/rpc/metapb"
)

// Backup files
//
// SaveBackup writes one file holding a backup of every group of a
// cluster (metactl snapshot save); metanode restore builds a new cluster
// from it. The file:
//
//	magic     8 bytes "METABAK1"
//	sections  one per group, back to back: the group's backup stream
//	          exactly as its node sent it (Cluster.Backup: a METASNP2
//	          file stream, sm/snapshot.go, which checksums its own header
//	          and each of its files)
//	manifest  JSON (BackupManifest): the cluster, and per group its kind,
//	          applied index, term, revision, state hash, and the offset,
//	          size and CRC-32C (Castagnoli) of its section
//	mlen      8 bytes big-endian: the manifest's length
//	mcrc      4 bytes big-endian: CRC-32C of the manifest
//	magic     8 bytes "METABAK1"
//
// The manifest is at the end because the sections' sizes and checksums
// are known only once they are written; a reader finds it from the fixed
// trailer. A file is written as FILE.tmp, fsynced, and renamed: FILE is
// whole or absent.

const (
	backupMagic = "METABAK1"
	// BackupVersion is the version of the backup file format.
	BackupVersion = 1
	// backupTrailer is mlen, mcrc and the closing magic.
	backupTrailer = 8 + 4 + len(backupMagic)
	// maxManifestBytes bounds a manifest (a few hundred bytes a group).
	maxManifestBytes = 64 << 20
)

// ErrBadBackup is returned for a backup file that is not one, is of an
// unknown version, is truncated, or whose checksums do not match.
var ErrBadBackup = errors.New("client: bad backup file")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// BackupManifest describes a backup file.
type BackupManifest struct {
	Version      int       `json:"version"`
	ClusterID    string    `json:"cluster_id"`
	Created      time.Time `json:"created"`
	MetaVersion  string    `json:"meta_version"`
	OffsetGroups uint32    `json:"offset_groups"`
	DataGroups   uint32    `json:"data_groups"`
	// Groups are in the order of their sections.
	Groups []BackupGroup `json:"groups"`
}

// BackupGroup describes one group's section of a backup file.
type BackupGroup struct {
	Group        string `json:"group"`
	Kind         string `json:"kind"`
	AppliedIndex uint64 `json:"applied_index"`
	Term         uint64 `json:"term"`
	Revision     uint64 `json:"revision"`
	Hash         uint64 `json:"hash"`
	Keys         uint64 `json:"keys"`
	Offset       int64  `json:"offset"`
	Size         int64  `json:"size"`
	CRC32C       uint32 `json:"crc32c"`
}

// Backup streams one group's backup (metapb.BackupRequest) into w and
// returns its header once the whole stream is written. A failure before
// any byte was written is retried, the group's leader preferred, for up
// to the client's RequestTimeout; a failure after is returned (w then
// holds part of a stream). The stream itself runs until ctx ends (a large
// group takes a while to export and send).
func (c *Client) Backup(ctx context.Context, group string, w io.Writer) (*metapb.BackupHeader, error) {
	var last error
	retryUntil := time.Now().Add(c.cfg.RequestTimeout)
	for attempt := 0; ; attempt++ {
		ep := c.writeEndpoint(group)
		if !c.ready(ctx, ep) {
			last = fmt.Errorf("client: %s: connection not ready", ep.addr)
			c.forgetLeader(group)
		} else {
			h, wrote, err := backupFrom(ctx, ep, group, w)
			if err == nil || wrote {
				return h, err
			}
			class, info := classify(err)
			if class == metapb.ClassFinal {
				return nil, err
			}
			c.noteHints(group, info)
			last = err
		}
		if time.Now().After(retryUntil) {
			return nil, last
		}
		if err := sleepBackoff(ctx, attempt); err != nil {
			return nil, last
		}
	}
}

// backupFrom runs one Backup call on ep; wrote says whether any byte
// reached w.
func backupFrom(ctx context.Context, ep *endpoint, group string, w io.Writer) (*metapb.BackupHeader, bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := ep.cl.Backup(ctx, &metapb.BackupRequest{Group: group})
	if err != nil {
		return nil, false, err
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, false, err
	}
	h := first.Header
	if h == nil || h.Group != group {
		return nil, false, fmt.Errorf("client: backup of %s: the first message carries no header for it", group)
	}
	var n uint64
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, n > 0, err
		}
		if _, err := w.Write(chunk.Data); err != nil {
			return nil, true, err
		}
		n += uint64(len(chunk.Data))
	}
	if n != h.Size {
		return nil, n > 0, fmt.Errorf("client: backup of %s: %d bytes received, the header says %d", group, n, h.Size)
	}
	return h, true, nil
}

// SaveBackup backs up every group the directory lists into one file at
// path (see the format above), each group at one applied index taken
// after the group's part began, and returns the manifest. progress, when
// set, is called after each group. Nothing is left at path on failure.
func (c *Client) SaveBackup(ctx context.Context, path string, progress func(BackupGroup)) (*BackupManifest, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	// The cluster's identity and groups are asked within RequestTimeout
	// (ctx may allow the whole backup hours).
	qctx, qcancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer qcancel()
	ms, err := c.Members(qctx)
	if err != nil {
		return nil, fmt.Errorf("read the cluster's identity: %w", err)
	}
	groups, err := c.ListGroups(qctx)
	if err != nil {
		return nil, fmt.Errorf("list the groups: %w", err)
	}
	man := &BackupManifest{Version: BackupVersion, ClusterID: ms.ClusterId, Created: time.Now().UTC(),
		OffsetGroups: ms.OffsetGroups, DataGroups: ms.DataGroups}
	for _, ep := range c.Endpoints() {
		if st, err := c.Status(qctx, ep); err == nil {
			man.MetaVersion = st.Version
			break
		}
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write([]byte(backupMagic)); err != nil {
		return nil, err
	}
	off := int64(len(backupMagic))
	for _, g := range groups.Groups {
		sum := crc32.New(castagnoli)
		cw := &countWriter{w: io.MultiWriter(f, sum)}
		h, err := c.Backup(ctx, g.Group, cw)
		if err != nil {
			return nil, fmt.Errorf("back up %s: %w", g.Group, err)
		}
		bg := BackupGroup{Group: h.Group, Kind: h.Kind, AppliedIndex: h.AppliedIndex, Term: h.Term, Revision: h.Revision,
			Hash: h.Hash, Keys: h.Keys, Offset: off, Size: cw.n, CRC32C: sum.Sum32()}
		man.Groups = append(man.Groups, bg)
		off += cw.n
		if progress != nil {
			progress(bg)
		}
	}
	mj, err := json.Marshal(man)
	if err != nil {
		return nil, err
	}
	tail := binary.BigEndian.AppendUint64(mj, uint64(len(mj)))
	tail = binary.BigEndian.AppendUint32(tail, crc32.Checksum(mj, castagnoli))
	tail = append(tail, backupMagic...)
	if _, err := f.Write(tail); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, err
	}
	ok = true
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return nil, err
		}
	}
	return man, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// BackupFile is an opened backup file whose manifest has been read and
// checked (Verify checks the sections).
type BackupFile struct {
	Manifest *BackupManifest
	f        *os.File
}

// OpenBackup opens a backup file and reads its manifest: the magics, the
// manifest's checksum and version, and the sections' layout are checked;
// ErrBadBackup says what is wrong.
func OpenBackup(path string) (*BackupFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	b := &BackupFile{f: f}
	if b.Manifest, err = readManifest(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

func readManifest(f *os.File) (*BackupManifest, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if size < int64(len(backupMagic)+backupTrailer) {
		return nil, fmt.Errorf("%w: %d bytes, too short to be one (truncated?)", ErrBadBackup, size)
	}
	head := make([]byte, len(backupMagic))
	if _, err := f.ReadAt(head, 0); err != nil {
		return nil, err
	}
	if string(head) != backupMagic {
		return nil, fmt.Errorf("%w: magic %q at the start, want %q", ErrBadBackup, head, backupMagic)
	}
	tail := make([]byte, backupTrailer)
	if _, err := f.ReadAt(tail, size-int64(backupTrailer)); err != nil {
		return nil, err
	}
	if string(tail[12:]) != backupMagic {
		return nil, fmt.Errorf("%w: no closing magic (the file is truncated or was not written whole)", ErrBadBackup)
	}
	mlen := binary.BigEndian.Uint64(tail[:8])
	mstart := size - int64(backupTrailer) - int64(mlen)
	if mlen > maxManifestBytes || mstart < int64(len(backupMagic)) {
		return nil, fmt.Errorf("%w: manifest length %d does not fit the file's %d bytes", ErrBadBackup, mlen, size)
	}
	mj := make([]byte, mlen)
	if _, err := f.ReadAt(mj, mstart); err != nil {
		return nil, err
	}
	if crc32.Checksum(mj, castagnoli) != binary.BigEndian.Uint32(tail[8:12]) {
		return nil, fmt.Errorf("%w: manifest checksum mismatch", ErrBadBackup)
	}
	man := &BackupManifest{}
	if err := json.Unmarshal(mj, man); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrBadBackup, err)
	}
	if man.Version != BackupVersion {
		return nil, fmt.Errorf("%w: version %d, this binary reads version %d", ErrBadBackup, man.Version, BackupVersion)
	}
	off := int64(len(backupMagic))
	seen := map[string]bool{}
	for _, g := range man.Groups {
		if g.Group == "" || seen[g.Group] {
			return nil, fmt.Errorf("%w: manifest: group %q named twice or empty", ErrBadBackup, g.Group)
		}
		seen[g.Group] = true
		if g.Offset != off || g.Size <= 0 {
			return nil, fmt.Errorf("%w: manifest: group %s at offset %d (%d bytes), want offset %d", ErrBadBackup, g.Group, g.Offset, g.Size, off)
		}
		off += g.Size
	}
	if off != mstart {
		return nil, fmt.Errorf("%w: manifest: the sections end at %d, the manifest starts at %d", ErrBadBackup, off, mstart)
	}
	return man, nil
}

// Verify reads every section and checks its CRC-32C against the manifest.
func (b *BackupFile) Verify() error {
	for _, g := range b.Manifest.Groups {
		sum := crc32.New(castagnoli)
		if _, err := io.Copy(sum, b.Section(g)); err != nil {
			return fmt.Errorf("%s: group %s: %w", b.f.Name(), g.Group, err)
		}
		if sum.Sum32() != g.CRC32C {
			return fmt.Errorf("%s: %w: group %s: checksum mismatch (section of %d bytes at offset %d)",
				b.f.Name(), ErrBadBackup, g.Group, g.Size, g.Offset)
		}
	}
	return nil
}

// Section returns a reader of g's section.
func (b *BackupFile) Section(g BackupGroup) io.Reader {
	return io.NewSectionReader(b.f, g.Offset, g.Size)
}

// Close closes the file.
func (b *BackupFile) Close() error { return b.f.Close() }
