//go:build metabugs

package controller

import (
	"os"
	"strings"
)

// plantedDupReplica plants the bug "placement may put a second replica
// of a group on a node that holds one" (the new node for a replica is
// chosen without excluding the group's other nodes; metadata-0 refuses
// such a record, so the change never lands and the replica it was to
// replace stays where it is): only in builds tagged metabugs, and only
// while META_BUG contains "dupreplica".
func plantedDupReplica() bool { return strings.Contains(os.Getenv("META_BUG"), "dupreplica") }
