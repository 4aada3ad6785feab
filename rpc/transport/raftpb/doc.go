// Package raftpb is the wire format of meta's node-to-node traffic: the
// raft RPCs (each carrying its group and the cluster id) and the peer calls
// (forwarded proposals, read index, applied index, cluster info, named
// calls), generated from transport.proto by `make proto`. Only
// rpc/transport uses it. It imports no meta package.
package raftpb
