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

// plantedNoSpaceLate plants the bug "the NOSPACE refusal comes after the
// write": the space check runs once the proposal was applied, so a write
// reported refused with NOSPACE (a definite failure) took effect. Only in
// builds tagged metabugs, while META_BUG contains "nospacelate"; the
// disk-full fault exposes it.
func plantedNoSpaceLate() bool { return strings.Contains(os.Getenv("META_BUG"), "nospacelate") }

// plantedOwnLevel plants the bug "an operation is gated by the proposing
// node's own feature level instead of the cluster version": a node of the
// newer release admits and proposes its new operations (multi-puts, hash
// checks) while members of the older release, which halt on them, still
// run. Only in builds tagged metabugs, while META_BUG contains "ownlevel";
// the upgrade fault exposes it (a replica halted during the rolling
// upgrade).
func plantedOwnLevel() bool { return strings.Contains(os.Getenv("META_BUG"), "ownlevel") }
