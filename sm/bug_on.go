//go:build metabugs

package sm

import (
	"os"
	"strings"
)

// plantedProposeOwner plants the bug "ownership checked only at propose
// time": data and offset groups apply every op whatever ranges their own
// log says they own (metanode checks, on the node that takes the
// request, before proposing). Only in builds tagged metabugs, while
// META_BUG contains "proposeowner"; the reshard fault exposes it.
func plantedProposeOwner() bool { return strings.Contains(os.Getenv("META_BUG"), "proposeowner") }
