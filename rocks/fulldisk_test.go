package rocks

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/metamq/meta/verify/smallfs"
)

// A full disk fails writes with an error and never aborts the process.
// Debian's librocksdb is built with assertions, and a file writer that
// failed a write aborts the process in WritableFileWriter ("Assertion
// `sync_without_flush_called_' failed") when it is used again: the info
// log (the LOG file, on the same disk) at the next line logged, the full
// disk's own error; the write-ahead log at the next sync of it. The info
// log keeps only its header (options.go), and a write that failed
// refuses every later one (DB.write). Each half alone aborts here.
func TestFullDiskFailsWritesWithoutAborting(t *testing.T) {
	dir := smallfs.Mount(t, 24<<20)
	db := openAt(t, filepath.Join(dir, "db"), "g")
	s := mustData(t, db, "g")
	// The rest of the disk taken, as another process would.
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer filler.Close()
	chunk := make([]byte, 1<<20)
	for {
		if _, err := filler.Write(chunk); err != nil {
			break
		}
	}
	value := make([]byte, 64<<10)
	failed := 0
	for i := range 400 {
		rand.Read(value)
		if err := s.Put(fmt.Appendf(nil, "k%03d", i), value, i%2 == 0); err != nil {
			failed++
		}
		if i%50 == 49 {
			if err := db.Flush(); err != nil {
				failed++
			}
			if err := db.SyncWAL(); err != nil {
				failed++
			}
		}
	}
	if failed == 0 {
		t.Fatal("400 writes of 64 KiB and flushes on a full 24 MiB filesystem all succeeded: the disk never filled")
	}
	t.Logf("%d of 416 writes, flushes and log syncs failed, none aborted", failed)
	// Opened again on the full disk (a node restarted before space is
	// freed): an error or a database, no abort.
	_ = db.Close()
	again, err := Open(testOptions(filepath.Join(dir, "db")), []string{"g"})
	if err == nil {
		_ = again.Close()
	}
	t.Logf("opened again on the full disk: %v", err)
}
