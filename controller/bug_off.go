//go:build !metabugs

package controller

// plantedDupReplica is the switch of a planted bug for the verification
// harness; normal builds carry it as a constant false.
func plantedDupReplica() bool { return false }
