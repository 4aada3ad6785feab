// Package sm holds meta's deterministic state machines: the log-entry
// format (a type byte followed by a protobuf message of sm/logpb), the
// metadata, offset and data machines, and the snapshot stream format.
//
// A Machine implements raft.BatchingFSM over one column family of the
// node's RocksDB (package rocks). Every apply writes the data it changes and
// the applied index, term and revision in ONE write batch, so the stored
// state always says exactly which raft index it reflects; after a restart,
// entries at or below that index are skipped, never applied twice.
//
// Determinism: applying reads no clock, no randomness and no map order.
// Domain outcomes (a failed compare, a missing key, an invalid operation)
// are results, never panics. Only a storage failure, after which the node
// cannot know its own state, stops the process.
//
// sm may import rocks, raft (types) and its own logpb; never metanode, rpc
// or anything above it.
package sm
