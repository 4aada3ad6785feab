//go:build !metabugs

package sm

// plantedProposeOwner is false outside builds tagged metabugs (see
// bug_on.go).
func plantedProposeOwner() bool { return false }
