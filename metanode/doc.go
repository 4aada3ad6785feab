// Package metanode is a Meta Node: it owns the node's raft groups
// (metadata-0, offset-0..k-1, data-0..m-1) over one RocksDB, the node's one
// gRPC server (raft transport, peer calls, health, reflection; the public
// API is registered onto it by rpc/server), proposal batching, forwarding
// to leaders, linearizable reads, cluster formation and membership, and the
// spreading of leaders over nodes.
//
// metanode may import sm, rocks, rpc/transport, rpc/metapb (the routing
// contract), raft and grpc. It must not import rpc/server, rpc/client,
// controller, verify or chaos. metanode/metanodetest is the in-process
// cluster harness for tests.
package metanode
