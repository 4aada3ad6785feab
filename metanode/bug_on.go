//go:build metabugs

package metanode

import (
	"os"
	"strings"
)

// plantedLocalReads plants the bug "linearizable reads served locally
// without confirming leadership": only in builds tagged metabugs, and only
// when META_BUG contains "localreads".
var plantedLocalReads = strings.Contains(os.Getenv("META_BUG"), "localreads")
