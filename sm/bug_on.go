//go:build metabugs

package sm

import (
	"os"
	"strings"
)

// plantedTxnNoCompare plants the bug "a KVTxn applies its success branch
// without evaluating its compares" (and reports success): only in builds
// tagged metabugs, and only while META_BUG contains "txnnocompare" (read
// on every call, so tests can switch it).
func plantedTxnNoCompare() bool { return strings.Contains(os.Getenv("META_BUG"), "txnnocompare") }

// plantedSplitUnmarked plants the bug "a change to a key of a range a
// split tracks is neither marked nor summed", for keys ending in
// "unmarked": the copy misses it (its replay never comes) and the digest
// at the fence, the base plus the summed changes, agrees with the copy.
// Only in builds tagged metabugs, while META_BUG contains
// "splitunmarked"; the scan that verifies the fence digest after the
// acquire catches it (TestPlantedSplitUnmarked).
func plantedSplitUnmarked(key string) bool {
	return strings.HasSuffix(key, "unmarked") && strings.Contains(os.Getenv("META_BUG"), "splitunmarked")
}
