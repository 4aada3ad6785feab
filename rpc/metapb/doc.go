// Package metapb is meta's public API: the protobuf messages and gRPC
// services brokers use (generated from *.proto here by `make proto`), the
// routing contract (route.go: group names and the stable hash that maps
// keys to groups) and the error contract (errors.go: reasons and limits).
// It imports no meta package.
package metapb
