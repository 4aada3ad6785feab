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
