package metanode

import "testing"

// A leader's periodic scan waits after a quiet scan until something is
// applied or the earliest time it saw comes due; a scan that did
// something, or failed, is followed by another.
func TestQuietScanDue(t *testing.T) {
	for _, tc := range []struct {
		name    string
		set     quietScan
		applied uint64
		now     int64
		want    bool
	}{
		{"never scanned", quietScan{}, 0, 0, true},
		{"quiet, nothing changed", quietScan{quiet: true, applied: 7}, 7, 1e18, false},
		{"quiet, an entry applied", quietScan{quiet: true, applied: 7}, 8, 0, true},
		{"quiet, before the earliest time", quietScan{quiet: true, applied: 7, next: 100}, 7, 99, false},
		{"quiet, the earliest time came", quietScan{quiet: true, applied: 7, next: 100}, 7, 100, true},
		{"last scan did something", quietScan{quiet: false, applied: 7, next: 100}, 7, 0, true},
	} {
		q := tc.set
		if got := q.due(tc.applied, tc.now); got != tc.want {
			t.Errorf("%s: due(%d, %d) = %v, want %v", tc.name, tc.applied, tc.now, got, tc.want)
		}
	}
}
