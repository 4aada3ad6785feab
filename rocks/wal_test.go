package rocks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
			if err := sp.Put(fmt.Appendf(nil, "key-%04d", i), make([]byte, 512), true); err != nil {
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
