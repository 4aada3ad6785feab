// Package server implements meta's public gRPC services (KV, Offsets,
// Cluster) on top of a node it sees only through the Node interface it
// declares. It validates every request (InvalidArgument naming the field,
// nothing written), translates requests into log operations (sm/logpb),
// and maps node errors to gRPC statuses in one table (errors.go).
//
// server may import rpc/metapb, sm and sm/logpb (types), grpc; never
// metanode, rocks or raft.
package server
