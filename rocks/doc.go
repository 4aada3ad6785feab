// Package rocks owns the node's single RocksDB and is the only package in
// meta that uses cgo. It opens and closes the database, lays out its column
// families, and offers the storage abstractions the rest of the node is built
// on: spaces (one column family each), write batches that can read their own
// writes, point-in-time snapshots, and the raft LogStore and StableStore of
// every raft group.
//
// # Layout
//
// One database lives under Options.Dir. Its column families are:
//
//   - "node": node-local records (cluster identity and the like);
//   - for every raft group g (for example "metadata-0", "offset-3",
//     "data-1"): "g/log" (the raft log), "g/stable" (raft's stable state:
//     current term, vote) and "g/data" (the group's state-machine data);
//   - "default", which RocksDB always has and meta never uses.
//
// The set of groups is fixed when the database is opened. ListGroups reads
// the groups an existing database has, so a node can compare them with its
// configuration before it opens the database.
//
// # Boundaries
//
// No grocksdb type appears in this package's API: callers see *DB, *Space,
// *Batch, *Snapshot, *LogStore and *StableStore only, and every byte slice
// they receive from a Get is Go memory. Slices handed to Scan callbacks point
// into C memory and are valid only during the callback.
//
// rocks imports only the standard library, github.com/linxGnu/grocksdb and
// github.com/hashicorp/raft (for the LogStore and StableStore types and
// raft.ErrLogNotFound). It must never import another meta package. Its own
// cgo is one call, mallopt, to cap malloc arenas (see Options.MallocArenas).
// imports_test.go enforces the import rule.
//
// # Lifetime
//
// Every method of every type is safe for concurrent use except where a type
// says otherwise (Batch is owned by one goroutine). DB.Close waits for calls
// in progress, releases outstanding snapshots, destroys every column family
// handle and then closes the database; any later call returns ErrClosed and
// never touches freed C memory. A Scan callback must not call DB.Close.
package rocks
