// Package transport carries raft and peer traffic for many raft groups over
// one gRPC port.
//
// A meta node hosts several hashicorp/raft groups (metadata-0, offset-i,
// data-i) and serves everything on a single gRPC server. gRPC refuses to
// register a service twice, so the one-group-per-service transports found
// elsewhere cannot be used: here one RaftService carries every group's RPCs,
// each message names its group and the cluster it belongs to, and a Manager
// routes incoming messages to the group's Transport. A Transport implements
// raft.Transport (with raft.WithPreVote and raft.WithClose) for one group.
//
// The Manager also owns the outgoing side: exactly one *grpc.ClientConn per
// peer address, shared by every group and by the peer calls (Propose,
// ReadIndex, Applied, ClusterInfo) that metanode uses to forward work to
// other nodes. The wire format is documented in raftpb/transport.proto.
//
// Ownership. The Manager owns the group transports it hands out and the
// client connections; Manager.Close closes all of them. A Transport owns the
// pipelines it creates; Transport.Close (called by raft.Shutdown) closes them
// and waits for their goroutines. Server-side handlers run on goroutines of
// the caller's grpc.Server; they never block on a group that is closed.
//
// Errors. A failed peer call is a *PeerError of meta's one error
// vocabulary (rpc/metapb/errors.go): the reason of the handler's error and
// its metadata cross the wire as they are, beside a kind kept for peers of
// the previous release; this package is the only place that converts
// between the two.
//
// Imports: only hashicorp/raft, grpc, protobuf, genproto's google.rpc
// Status, raftpb, rpc/metapb (the error vocabulary, a leaf) and the
// standard library. This package must not import metanode, sm or rocks:
// metanode imports it. ci/arch_test.go enforces both.
package transport
