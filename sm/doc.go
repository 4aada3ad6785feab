// Package sm holds meta's deterministic state machines: the log-entry
// format (a type byte followed by a protobuf message of sm/logpb), the
// metadata, offset and data machines, their raft snapshot store and the
// snapshot formats.
//
// A Machine implements raft.BatchingFSM over one column family of the
// node's RocksDB (package rocks). Every apply writes the data it changes and
// the applied index, term and revision in ONE write batch, so the stored
// state always says exactly which raft index it reflects; after a restart,
// entries at or below that index are skipped, never applied twice.
//
// Snapshots (snapshot.go, snapstore.go) are not copies of the data. A
// snapshot raft takes is a marker: raft's metadata and the applied state,
// stored by SnapStore once the write-ahead log is synced; the data stays
// where it is. When raft sends a snapshot to a follower, SnapStore exports
// the group's data from one RocksDB view as SST files and streams them
// (METASNP2: a checksummed JSON header listing the files with their sizes
// and CRC-32C, then the files), at most at a Limiter's rate. The follower
// stores the files, and Restore verifies them, then clears its data and
// ingests them, with the new applied state, in one atomic RocksDB
// ingestion; a restoring marker written first makes a crash in between
// detectable, and the node restores the same files again at start. The
// exported data may be newer than the snapshot's raft index; the follower
// skips the re-delivered entries it already holds, by its applied index.
// Snapshots of older versions (raft's FileSnapshotStore holding a METASNP1
// record stream) are read, restored, and turned into markers.
//
// A backup (backup.go) is the same file stream, exported from one view
// together with the state hash of that view; RestoreBackup installs one
// into the empty group of a new cluster's data directory, verified whole
// first, at applied index 0 with the backup's revision.
//
// Determinism: applying reads no clock, no randomness and no map order.
// Domain outcomes (a failed compare, a missing key, an invalid operation)
// are results, never panics. A storage failure (a full disk) halts the
// group on this node, its applied index below the entry it could not
// store, and never stops the process (machine.go, ApplyBatch).
//
// sm may import rocks, raft (types) and its own logpb; never metanode, rpc
// or anything above it.
package sm
