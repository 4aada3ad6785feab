package verify

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// DamageFile damages a file of the kind asked for, the newest log when it
// is a log (an older one may be obsolete: damage nothing reads tests
// nothing), and falls back to the next kind when there is none.
func TestDamageFile(t *testing.T) {
	dir := t.TempDir()
	body := bytes.Repeat([]byte("0123456789abcdef"), 64)
	write := func(rel string) string {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, body, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("db/000009.log")
	newest := write("db/000012.log")
	write("db/000010.log")
	sst := write("db/000011.sst")
	for pick := range uint64(4) {
		kind, path, err := DamageFile(dir, "wal", pick)
		if err != nil || kind != "wal" || path != newest {
			t.Fatalf("pick %d: got %s %s %v, want the newest log %s", pick, kind, path, err, newest)
		}
	}
	got, err := os.ReadFile(newest)
	if err != nil || bytes.Equal(got, body) {
		t.Fatalf("the log was not damaged (err %v)", err)
	}
	if kind, path, err := DamageFile(dir, "snapshot", 1); err != nil || kind != "sst" || path != sst {
		t.Fatalf("no snapshot: got %s %s %v, want the next kind, sst %s", kind, path, err, sst)
	}
}
