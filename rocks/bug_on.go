//go:build metabugs

package rocks

import (
	"os"
	"strings"
)

// bugsBuilt is true only in builds with the metabugs tag, which carry the
// bugs planted for the verification harness to find.
const bugsBuilt = true

// bugNoSync reports whether the planted "nosync" bug is switched on: raft
// log writes then skip the write-ahead log (WriteOptions.DisableWAL) instead
// of syncing it, so entries raft acknowledged are lost by a crash. The
// harness switches it on with META_BUG=nosync (the variable may name
// several bugs). This is the package's only read of the environment, and it
// exists only in metabugs builds.
func bugNoSync() bool {
	return strings.Contains(os.Getenv("META_BUG"), "nosync")
}
