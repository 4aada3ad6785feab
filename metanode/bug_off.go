//go:build !metabugs

package metanode

// plantedLocalReads is the switch of a planted bug for the verification
// harness; normal builds carry it as a constant false.
func plantedLocalReads() bool { return false }

func plantedNoSpaceLate() bool { return false }

func plantedOwnLevel() bool { return false }
