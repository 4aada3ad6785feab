// Package logpb is the raft log-entry format of meta's state machines and
// the layout of stored values, generated from log.proto by `make proto`.
// It is an on-disk format, separate from the public API (rpc/metapb): its
// fields are only ever added. It imports no meta package.
package logpb
