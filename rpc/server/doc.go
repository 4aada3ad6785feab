// Package server implements meta's public gRPC services (KV, Offsets,
// Cluster, and the broker API: Metadata, Sessions, Wills, Retained, Leases,
// Watch) on top of a node it sees only through the Node interface it
// declares (and the controller through the Controller interface). It
// validates every request (InvalidArgument naming the field, nothing
// written), translates requests into log operations (sm/logpb), reads
// through state.Reader (sm/state), and maps errors to gRPC statuses once,
// at the public API's boundary (errors.go: publicStatus, from meta's one
// error vocabulary in rpc/metapb/errors.go; resultError for domain
// results).
//
// server may import rpc/metapb, sm/logpb (the log operations it builds)
// and sm/state (the read-only view and its records), and grpc; never sm
// itself, metanode, controller, rocks or raft. ci/arch_test.go enforces
// this, as ../shared/ARCHITECTURE.md states it.
package server
