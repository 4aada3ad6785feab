//go:build metabugs

package metanode

import (
	"os"
	"strings"
)

// plantedLocalReads plants the bug "linearizable reads served locally
// without confirming leadership": only in builds tagged metabugs, and only
// while META_BUG contains "localreads" (read on every call, so tests can
// switch it).
func plantedLocalReads() bool { return strings.Contains(os.Getenv("META_BUG"), "localreads") }
