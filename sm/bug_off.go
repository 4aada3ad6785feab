//go:build !metabugs

package sm

// plantedTxnNoCompare is false in normal builds: the planted bugs
// (bug_on.go) are not compiled in.
func plantedTxnNoCompare() bool { return false }

// plantedSplitUnmarked is false in normal builds.
func plantedSplitUnmarked(string) bool { return false }
