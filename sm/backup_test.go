package sm

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
)

// takeBackup exports se's machine as a backup and returns it and its
// stream.
func takeBackup(t *testing.T, se *storeEnv) (*Backup, []byte) {
	t.Helper()
	b, err := se.m.Backup()
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	r, err := b.Reader()
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != b.Size {
		t.Fatalf("stream of %d bytes, Size says %d", len(data), b.Size)
	}
	return b, data
}

// A backup is one view with its state hash; restored into a new machine it
// hashes the same, at applied index 0 with the backup's revision. Its files
// are deleted at Close.
func TestBackupRestoresIntoANewMachine(t *testing.T) {
	src := newStoreEnv(t, KindData)
	src.apply(1, 400)
	b, data := takeBackup(t, src)
	if want := src.hash(); b.Hash != want {
		t.Fatalf("backup hash %+v, the machine's %+v", b.Hash, want)
	}
	info, err := CheckBackup(bytes.NewReader(data), KindData)
	if err != nil || info.Applied.GetIndex() != 400 || info.Bytes != b.Size {
		t.Fatalf("CheckBackup: %+v, %v; want index 400 and %d bytes", info, err, b.Size)
	}
	dst := newStoreEnv(t, KindData)
	h, err := dst.m.RestoreBackup(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("RestoreBackup: %v", err)
	}
	want := b.Hash
	want.Index = 0
	if h != want || dst.hash() != want {
		t.Fatalf("restored hash %+v (now %+v), want %+v", h, dst.hash(), want)
	}
	if _, err := dst.m.RestoreBackup(bytes.NewReader(data)); err == nil {
		t.Fatal("RestoreBackup into a machine that holds state: no error")
	}
	dir := b.dir
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Close left the export at %s (stat: %v)", dir, err)
	}
}

// A damaged backup stream is refused by CheckBackup and by RestoreBackup,
// which leaves the machine as it was (empty).
func TestCorruptBackupIsRefused(t *testing.T) {
	src := newStoreEnv(t, KindData)
	src.apply(1, 400)
	b, good := takeBackup(t, src)
	for name, bad := range corruptions(t, good, b.header) {
		t.Run(name, func(t *testing.T) {
			if _, err := CheckBackup(bytes.NewReader(bad), KindData); !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("CheckBackup: got %v, want ErrBadSnapshot", err)
			}
			dst := newStoreEnv(t, KindData)
			empty := dst.hash()
			if _, err := dst.m.RestoreBackup(bytes.NewReader(bad)); !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("RestoreBackup: got %v, want ErrBadSnapshot", err)
			}
			if got := dst.hash(); got != empty {
				t.Fatalf("a refused backup changed the state: %+v, was %+v", got, empty)
			}
		})
	}
}
