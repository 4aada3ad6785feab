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
// several bugs). The planted bugs' switches are the package's only reads
// of the environment, and they exist only in metabugs builds.
func bugNoSync() bool {
	return strings.Contains(os.Getenv("META_BUG"), "nosync")
}

// bugWALReplay reports whether the planted "walreplay" bug is switched on:
// Open then recovers the write-ahead log as RocksDB does by default
// (point-in-time recovery) instead of failing on a record that fails its
// checksum, so a node whose log was damaged replays it up to the damage,
// silently drops every write after it (raft log entries it acknowledged,
// its term and vote, applied state) and starts as if nothing happened.
// The corrupt fault's check (a damaged write-ahead log must stop the
// node) exposes it. Read when the database opens.
func bugWALReplay() bool {
	return strings.Contains(os.Getenv("META_BUG"), "walreplay")
}
