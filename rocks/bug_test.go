package rocks

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestPlantedNoSyncBug shows the planted bug at work, and its absence.
// Entries 1..5 are flushed to SST files; entries 6..10 are only in the
// memtable (and, normally, in the write-ahead log) when the DB closes.
// Close does not flush memtables (avoid_flush_during_shutdown), so it is a
// crash as far as the memtable goes: with the bug active (build tag
// metabugs and META_BUG=nosync) entries 6..10 never reached the log and are
// gone after reopen; in every other case they survive.
//
// Run both halves with: go test -tags metabugs -run PlantedNoSync ./rocks/
func TestPlantedNoSyncBug(t *testing.T) {
	tests := []struct {
		env      string
		wantLast uint64
		wantWarn bool // the one log line at open that says the bug is on
	}{
		{env: "", wantLast: 10},
		{env: "other", wantLast: 10},
		{env: "nosync", wantLast: map[bool]uint64{true: 5, false: 10}[bugsBuilt], wantWarn: bugsBuilt},
		{env: "x,nosync", wantLast: map[bool]uint64{true: 5, false: 10}[bugsBuilt], wantWarn: bugsBuilt},
	}
	for _, tc := range tests {
		t.Run("META_BUG="+tc.env, func(t *testing.T) {
			t.Setenv("META_BUG", tc.env)
			dir := t.TempDir()
			var logged bytes.Buffer
			opts := testOptions(dir)
			opts.Logger = slog.New(slog.NewTextHandler(&logged, nil))
			db, err := Open(opts, []string{"g"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = db.Close() })
			if got := strings.Count(logged.String(), "PLANTED BUG"); got != map[bool]int{true: 1, false: 0}[tc.wantWarn] {
				t.Fatalf("bug warnings logged at open: got %d, want %v\n%s", got, tc.wantWarn, logged.String())
			}
			ls := mustLogStore(t, db, "g")
			if err := ls.StoreLogs(testLogs(1, 5)); err != nil {
				t.Fatal(err)
			}
			if err := db.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := ls.StoreLogs(testLogs(6, 10)); err != nil {
				t.Fatal(err)
			}
			expectBounds(t, ls, 1, 10) // acknowledged
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db = openAt(t, dir, "g")
			expectBounds(t, mustLogStore(t, db, "g"), 1, tc.wantLast)
		})
	}
}
