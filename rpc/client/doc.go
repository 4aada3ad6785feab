// Package client is the Go client brokers import to talk to a meta cluster.
//
// It routes writes to the leader of the group that owns the key (learned
// from the nodes' Status and from NOT_LEADER hints), spreads reads over the
// endpoints, and retries only what is safe to retry: reads, and writes the
// server reports as definitely not applied (NOT_LEADER, NO_LEADER,
// SHUTTING_DOWN, a connection that never became ready). A write whose
// outcome is unknown is returned at once wrapped in ErrUnknownOutcome and is
// never retried by the client.
//
// Concurrent Put, Get, CommitOffsets, FetchOffsets and PutSessions calls
// to one group are coalesced into batch RPCs: an idle client sends a call
// at once, alone; calls that arrive while one is in flight share the next
// batch (coalesce.go: which calls qualify, and why each caller's outcome
// stays exact). Config.NoCoalesce turns it off. A node that answers
// Unimplemented to MultiPut or MultiGet (an older release, mid rolling
// upgrade) gets the batch's calls one by one, and for a minute after it the
// client sends calls meant for that node alone without trying the batch
// first (tryBatch).
//
// Backup and SaveBackup take online backups (Cluster.Backup); the backup
// file's format and its reader (OpenBackup, Verify) are in backup.go.
//
// It imports only the public protos (rpc/metapb) and gRPC; never the
// server's internals.
package client
