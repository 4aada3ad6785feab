// Package server implements meta's public gRPC services (KV, Offsets,
// Cluster, and the broker API: Metadata, Sessions, Wills, Retained, Leases,
// Watch) on top of a node it sees only through the Node interface it
// declares. It validates every request (InvalidArgument naming the field,
// nothing written), translates requests into log operations (sm/logpb),
// and maps node errors and domain results to gRPC statuses in one table
// each (errors.go: statusOf, resultError).
//
// server may import rpc/metapb, sm and sm/logpb (types), grpc; never
// metanode, rocks or raft.
package server
