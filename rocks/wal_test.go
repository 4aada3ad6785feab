package rocks

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// A write-ahead log damaged in its middle fails Open with ErrCorruptFiles
// instead of being replayed up to the damage, which silently dropped the
// writes after it (raft log entries a replica had acknowledged). A log cut
// short inside its last record (a crash during a write whose sync never
// returned) still opens, with every write before that record.
func TestWALDamage(t *testing.T) {
	const keys = 200
	write := func(t *testing.T) (dir, wal string) {
		return writeOneLog(t, keys, func(int) []byte { return make([]byte, 512) })
	}
	t.Run("flipped byte in the middle", func(t *testing.T) {
		dir, wal := write(t)
		b, err := os.ReadFile(wal)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(wal, b, 0o644); err != nil {
			t.Fatal(err)
		}
		db, err := Open(testOptions(dir), []string{"g"})
		if err == nil {
			db.Close()
			t.Fatal("open of a database whose WAL has a flipped byte: got nil error, want ErrCorruptFiles")
		}
		if !errors.Is(err, ErrCorruptFiles) {
			t.Fatalf("open: got %v, want ErrCorruptFiles", err)
		}
	})
	t.Run("torn last record", func(t *testing.T) {
		dir, wal := write(t)
		st, err := os.Stat(wal)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(wal, st.Size()-100); err != nil {
			t.Fatal(err)
		}
		db, err := Open(testOptions(dir), []string{"g"})
		if err != nil {
			t.Fatalf("open after a torn last record: %v", err)
		}
		defer db.Close()
		sp, err := db.Data("g")
		if err != nil {
			t.Fatal(err)
		}
		for i := range keys - 1 {
			if _, ok, err := sp.Get(fmt.Appendf(nil, "key-%04d", i)); err != nil || !ok {
				t.Fatalf("key-%04d after a torn last record: found %v, %v; want every key before the torn one", i, ok, err)
			}
		}
	})
}

// writeOneLog writes keys synced puts (key-0000 on, values from value)
// to a new database and closes it; it returns the database's directory
// and its one write-ahead log (the memtable is not flushed on close).
func writeOneLog(t *testing.T, keys int, value func(i int) []byte) (dir, wal string) {
	t.Helper()
	dir = t.TempDir()
	db, err := Open(testOptions(dir), []string{"g"})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := db.Data("g")
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		if err := sp.Put(fmt.Appendf(nil, "key-%04d", i), value(i), true); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	if len(logs) != 1 {
		t.Fatalf("write-ahead logs: got %v, want one (the memtable is not flushed on close)", logs)
	}
	return dir, logs[0]
}

// copyWithWAL copies the database in dir to a new directory, its
// write-ahead log (named wal) replaced by b.
func copyWithWAL(t *testing.T, dir, wal string, b []byte) string {
	t.Helper()
	to := t.TempDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		data := b
		if e.Name() != filepath.Base(wal) {
			if data, err = os.ReadFile(filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// walRecords returns the offsets of a log's physical records.
func walRecords(b []byte) []int {
	var out []int
	for off := 0; off+walHeaderBytes <= len(b); {
		if left := walBlockBytes - off%walBlockBytes; left < walHeaderBytes {
			off += left
			continue
		}
		n := int(binary.LittleEndian.Uint16(b[off+4:]))
		if n == 0 && b[off+6] == 0 {
			break
		}
		out = append(out, off)
		off += walHeaderBytes + n
	}
	return out
}

// A record's length field damaged so that the record runs past the end
// of the log reads, to RocksDB, as a write a crash cut short, and was
// dropped with every record after it: synced, acknowledged writes lost
// with no error. Open tells the two apart (waltail.go): every flipped bit
// of the last record's length, and a length of an earlier record made to
// swallow the rest, fail Open with ErrCorruptFiles; a log cut anywhere
// inside its last record still opens, with every key before it.
func TestWALDamagedLengthIsNotATornTail(t *testing.T) {
	const keys = 20
	dir, log := writeOneLog(t, keys, func(i int) []byte { return fmt.Appendf(nil, "value-%d-of-some-length", i) })
	wal, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	recs := walRecords(wal)
	if len(recs) < 2 {
		t.Fatalf("records: %v", recs)
	}
	last, prev := recs[len(recs)-1], recs[len(recs)-2]
	refused := func(what string, b []byte) {
		t.Helper()
		db, err := Open(testOptions(copyWithWAL(t, dir, log, b)), []string{"g"})
		if err == nil {
			db.Close()
			t.Fatalf("%s: opened, want ErrCorruptFiles", what)
		}
		if !errors.Is(err, ErrCorruptFiles) {
			t.Fatalf("%s: %v, want ErrCorruptFiles", what, err)
		}
	}
	for bit := range 16 {
		b := slices.Clone(wal)
		b[last+4+bit/8] ^= 1 << (bit % 8)
		refused(fmt.Sprintf("bit %d of the last record's length flipped", bit), b)
	}
	b := slices.Clone(wal)
	b[prev+5] ^= 0x40 // 16 KiB more: past the end of the log
	refused("the next-to-last record's length made to swallow the last", b)
	b[prev] ^= 0xff
	refused("the next-to-last record's length and checksum damaged", b)

	for cut := last + walHeaderBytes; cut < len(wal); cut++ {
		db, err := Open(testOptions(copyWithWAL(t, dir, log, wal[:cut])), []string{"g"})
		if err != nil {
			t.Fatalf("a log cut at %d, inside its last record (%d to %d): %v, want it to open", cut, last, len(wal), err)
		}
		sp, err := db.Data("g")
		if err != nil {
			t.Fatal(err)
		}
		for i := range keys - 1 {
			if _, ok, err := sp.Get(fmt.Appendf(nil, "key-%04d", i)); err != nil || !ok {
				t.Fatalf("cut at %d: key-%04d: found %v, %v", cut, i, ok, err)
			}
		}
		db.Close()
	}
}
