package rocks

import "errors"

var (
	// ErrClosed is returned by every call made after DB.Close (or after
	// Snapshot.Close / Batch.Close on that object).
	ErrClosed = errors.New("rocks: closed")

	// ErrUnknownGroup is returned when the DB has no such group (it was
	// never opened or added, or it was dropped).
	ErrUnknownGroup = errors.New("rocks: unknown group")

	// ErrGroupDropped is returned by every call on a LogStore,
	// StableStore or Space of a group after DropGroup dropped it.
	ErrGroupDropped = errors.New("rocks: group dropped")

	// ErrInvalidGroup is returned by Open and AddGroup for a group name that cannot name
	// column families (empty, reserved, duplicated or with a '/').
	ErrInvalidGroup = errors.New("rocks: invalid group name")

	// ErrInvalidOptions wraps every problem Options.Validate reports.
	ErrInvalidOptions = errors.New("rocks: invalid options")

	// ErrCorrupt is returned when a stored value cannot be decoded.
	ErrCorrupt = errors.New("rocks: corrupt value")

	// ErrCorruptFiles wraps Open's error when RocksDB found its files
	// damaged (a checksum mismatch in the write-ahead log or a table
	// file): the replica's data cannot be trusted.
	ErrCorruptFiles = errors.New("rocks: the database's files are damaged")

	// ErrWriteFailed wraps the earlier failure when a write, flush or log
	// sync is refused because an earlier one failed (DB.write): the
	// database takes no write until it is opened again.
	ErrWriteFailed = errors.New("rocks: an earlier write failed; no writes until the database is reopened")

	// ErrForeignSpace is returned when a Space of one DB is used with a
	// Batch or Snapshot of another.
	ErrForeignSpace = errors.New("rocks: space belongs to another database")

	// ErrNotFound is what StableStore.Get and StableStore.GetUint64 return
	// for a missing key. Its text is exactly "not found", without the
	// "rocks: " prefix every other error here carries, because
	// hashicorp/raft recognises a missing stable key by comparing
	// err.Error() with "not found" (api.go HasExistingState, raft.go
	// NewRaft and requestVote). Compare with errors.Is in meta's own code.
	ErrNotFound = errors.New("not found")
)
