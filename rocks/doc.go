// Package rocks owns the node's single RocksDB and is the only package in
// meta that uses cgo. It opens and closes the database, lays out its column
// families, and offers the storage abstractions the rest of the node is built
// on: spaces (one column family each), write batches that can read their own
// writes, point-in-time snapshots, SST files written outside the database
// and ingested into a space, and the raft LogStore and StableStore of every
// raft group.
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
// Open opens the groups it is given and every group the database already
// has. Groups come and go at run time: AddGroup creates a group's three
// column families, DropGroup drops them (and RocksDB deletes their files)
// while the other groups keep working. ListGroups reads the groups an
// existing database has without opening it.
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
// ci/arch_test.go enforces the import rule.
//
// # Lifetime
//
// Every method of every type is safe for concurrent use except where a type
// says otherwise (Batch and SSTWriter are owned by one goroutine). DB.Close
// waits for calls in progress, releases outstanding snapshots, destroys
// every column family handle and then closes the database; any later call
// returns ErrClosed and never touches freed C memory. DropGroup does the
// same for one group: it waits for the calls in progress on the group's
// stores, then drops and destroys its handles; later calls on them return
// ErrGroupDropped. A Scan callback must not call DB.Close, nor DropGroup
// on its own group.
package rocks
