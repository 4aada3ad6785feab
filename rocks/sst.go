package rocks

import (
	"bytes"
	"fmt"

	"github.com/linxGnu/grocksdb"
)

// SSTWriter writes one SST file that a Space can ingest (Space.Ingest). It
// uses the options of the state-machine spaces (block size, bloom filter,
// LZ4), so an ingested file is indistinguishable from one RocksDB wrote
// itself. Keys must be added in strictly ascending order. An SSTWriter
// belongs to one goroutine; Close frees it and is safe twice.
type SSTWriter struct {
	db   *DB
	w    *grocksdb.SSTFileWriter // nil after Close
	eo   *grocksdb.EnvOptions
	path string
	last []byte // the greatest key added, to report misordering clearly
	n    int
	done bool // Finish has run
}

// NewSSTWriter creates the SST file at path (which must not exist) and
// returns a writer for it.
func (db *DB) NewSSTWriter(path string) (*SSTWriter, error) {
	if err := db.gate.enter(); err != nil {
		return nil, err
	}
	defer db.gate.leave()
	eo := grocksdb.NewDefaultEnvOptions()
	w := grocksdb.NewSSTFileWriter(eo, db.nat.opts)
	if err := w.Open(path); err != nil {
		w.Destroy()
		eo.Destroy()
		return nil, fmt.Errorf("rocks: create SST %s: %w", path, err)
	}
	return &SSTWriter{db: db, w: w, eo: eo, path: path}, nil
}

// Put adds key = value. key must be greater than every key added before.
func (w *SSTWriter) Put(key, value []byte) error {
	if err := w.usable(key); err != nil {
		return err
	}
	if err := w.w.Put(key, value); err != nil {
		return fmt.Errorf("rocks: SST %s: put: %w", w.path, err)
	}
	w.added(key)
	return nil
}

// Delete adds a deletion of key: once the file is ingested, key is absent
// whatever the space held before. key must be greater than every key added
// before.
func (w *SSTWriter) Delete(key []byte) error {
	if err := w.usable(key); err != nil {
		return err
	}
	if err := w.w.Delete(key); err != nil {
		return fmt.Errorf("rocks: SST %s: delete: %w", w.path, err)
	}
	w.added(key)
	return nil
}

func (w *SSTWriter) usable(key []byte) error {
	if w.w == nil || w.done {
		return fmt.Errorf("%w: SST writer %s", ErrClosed, w.path)
	}
	if w.n > 0 && bytes.Compare(key, w.last) <= 0 {
		return fmt.Errorf("rocks: SST %s: key %q added after %q", w.path, key, w.last)
	}
	return nil
}

func (w *SSTWriter) added(key []byte) {
	w.last = append(w.last[:0], key...)
	w.n++
}

// Count returns the number of keys added.
func (w *SSTWriter) Count() int { return w.n }

// Finish completes the file (RocksDB syncs it) and returns its size.
// A file needs at least one key: RocksDB refuses to finish an empty one.
func (w *SSTWriter) Finish() (int64, error) {
	if w.w == nil || w.done {
		return 0, fmt.Errorf("%w: SST writer %s", ErrClosed, w.path)
	}
	w.done = true
	if err := w.w.Finish(); err != nil {
		return 0, fmt.Errorf("rocks: SST %s: finish: %w", w.path, err)
	}
	return int64(w.w.FileSize()), nil
}

// Close frees the writer. A file not finished is left incomplete on disk
// for the caller to remove.
func (w *SSTWriter) Close() {
	if w.w != nil {
		w.w.Destroy()
		w.eo.Destroy()
		w.w, w.eo = nil, nil
	}
}

// Ingest adds the SST files at paths to the space in one atomic step
// (RocksDB's IngestExternalFile): after a crash either all of their keys
// are in the space or none is. Ingested keys take precedence over every
// key and deletion the space held before, range deletions included.
//
// The files are moved into the database (hard-linked, then unlinked once
// the ingestion succeeded; copied if the link fails), so they must not be
// used afterwards. RocksDB may write into an ingested file (its global
// sequence number), so a caller that needs the file's original bytes later
// ingests a link or copy of it instead.
func (s *Space) Ingest(paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	if err := s.db.enterCF(s.gate); err != nil {
		return err
	}
	defer s.db.leaveCF(s.gate)
	o := grocksdb.NewDefaultIngestExternalFileOptions()
	defer o.Destroy()
	o.SetMoveFiles(true)
	// Refused after a failed write, but a failed ingest (a damaged file
	// received) does not stop the database's writes.
	err := s.db.writable()
	if err == nil {
		err = s.db.db.IngestExternalFileCF(s.cf, paths, o)
	}
	if err != nil {
		return fmt.Errorf("rocks: ingest %d files into %s: %w", len(paths), s.name, err)
	}
	return nil
}
