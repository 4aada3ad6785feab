//go:build !metabugs

package rocks

// bugsBuilt is false in normal builds: the planted bugs (bug_on.go) are not
// compiled in, and `bugsBuilt && ...` lets the compiler drop their call
// sites.
const bugsBuilt = false

func bugNoSync() bool { return false }

func bugWALReplay() bool { return false }
