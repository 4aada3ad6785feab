//go:build !metabugs

package server

// plantedOpenAuth is the switch of a planted bug for the verification
// harness; normal builds carry it as a constant false.
func plantedOpenAuth() bool { return false }
