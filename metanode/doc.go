// Package metanode is a Meta Node: it owns the node's raft groups
// (metadata-0, offset-0..k-1, data-0..m-1) over one RocksDB, the node's one
// gRPC server (raft transport, peer calls, health, reflection; the public
// API is registered onto it by rpc/server), proposal batching, forwarding
// to leaders, linearizable reads, cluster formation and membership, and the
// spreading of leaders over nodes.
//
// # Structure
//
// A Node owns its groups; a group holds no pointer to the node, only an env
// (timings, logger, storage, the peer transport, the named-call handlers
// and what to run while it leads). Every goroutine has an owner that ends
// and awaits it (lifetime: the node's, each group's inside it, each
// leadership term's inside its group's). Every call made to raft is
// counted, and raft is shut down only once each was answered, so nothing
// ever waits on raft for ever. Each group has one leadership-change
// notification; a term's leader work starts only after the previous
// term's work has returned. All waits and bounds are derived from Config
// in timings.go.
//
// # Metrics and health
//
// metrics.go: the node's figures go into one Prometheus registry
// (Config.Metrics), read at scrape time where they are state (group
// indexes, queue depths, RocksDB) and counted where they happen otherwise
// (leader changes, batch sizes, apply latency); labels are group names at
// most. Ready is the one meaning of "ready" (every hosted group has a
// leader, applied close to commit, no storage error): /readyz says it over
// HTTP on Config.MetricsListen, and the health loop keeps the gRPC health
// service in step with it.
//
// # Errors
//
// Node errors speak meta's one vocabulary (rpc/metapb/errors.go): each
// says its reason (NotLeaderError, ErrNoLeader, ErrUnknownOutcome, ...),
// and the servers, the peer wire and the client classify it by that
// reason. An error from a peer (transport.PeerError) is returned up as it
// came.
//
// # Backup and restore
//
// backup.go: Node.Backup exports a group for an online backup after a
// linearizable read barrier (one storage view, with its state hash).
// restore.go: Restore lays out one initial member's data directory of a
// NEW cluster from a verified backup: what a first start with the same
// initial cluster would write (identity, each hosted group bootstrapped),
// each group holding the backed-up state; metadata-0 without the old
// cluster's record, members and directory, which the new cluster's first
// metadata leader writes.
//
// # Disaster recovery
//
// recover.go: Recover makes a stopped survivor of a lost majority the only
// member of its cluster (same id): hashicorp/raft's RecoverCluster forces a
// configuration of this node alone on every group it holds, after its
// whole log; metadata-0's members and directory are rewritten by one more
// entry applied after that log. Lost groups are refused, or recreated empty
// when asked. Restore and Recover open a group's stores and bootstrap it
// through the same helpers (groupStores).
//
// # Leadership transfers
//
// transfer.go: every transfer this node starts (an admin's, the leader
// spreading's, a move's hand-off, a halted or fenced replica's, a
// shutdown's) goes through one guard that never asks raft for a second
// transfer to a target whose earlier one in the same term did not end
// cleanly until it caught up: with hashicorp/raft v1.8.0 that second
// transfer can leave the group refusing every write for ever (raft#696).
// Such a transfer is refused with TRANSFER_REFUSED instead.
//
// # Running something on a group's leader
//
// onLeader is the one way: local when this node leads, else a peer call to
// the leader; definite not-leader answers are retried while a new leader
// is found (Propose, CallLeader, MoveLeader all use it).
//
// # Peer calls (rpc/transport, PeerService)
//
//	call          served by (this package)   called by
//	Propose       peerHandler.Propose         group.forward (Propose on a follower)
//	ReadIndex     peerHandler.ReadIndex       group.askLeaderReadIndex (linearizable read on a follower)
//	Applied       peerHandler.Applied         group.reconcile (promote a caught-up non-voter)
//	ClusterInfo   peerHandler.ClusterInfo     Node.joinIdentity (a node started with --join)
//	Call          peerHandler.Call            CallLeader: the named calls below
//
// # Named calls (Call; payloads are protobuf messages)
//
//	method                          payload                        registered by          called by
//	metanode.transfer-leader/v2     raftpb.TransferLeaderCall      metanode (registerCalls) Node.MoveLeader (controller's leader spread)
//	metanode.remove-server/v2       raftpb.RemoveServerCall        metanode                 Node.removeFromOthers (metadata leader evicts a removed member)
//	metanode.fresh-snapshot/v2      raftpb.FreshSnapshotCall       metanode                 group.askFreshSnapshot (a follower refused a stale snapshot)
//	controller.register             metapb.RegisterBrokerRequest   rpc/server               ControllerService.RegisterBroker on any node
//	controller.heartbeat            metapb.HeartbeatRequest        rpc/server               ControllerService.Heartbeat on any node
//	controller.status               metapb.ControllerStatusRequest rpc/server               ControllerService.Status on any node
//	controller.remove-member        metapb.RemoveMemberRequest     rpc/server               Server.RemoveMember on any node
//	controller.move-replica         metapb.MoveReplicaRequest      rpc/server               Server.MoveReplica on any node
//	controller.list-groups          metapb.ListGroupsRequest       rpc/server               Server.ListGroups on any node
//	controller.list-nodes           metapb.ListNodesRequest        rpc/server               Server.ListNodes on any node
//	controller.split-group          metapb.SplitGroupRequest       rpc/server               Server.SplitGroup on any node (Node.StartSplit on metadata-0's leader)
//	controller.abort-split          metapb.AbortSplitRequest       rpc/server               Server.AbortSplit on any node (Node.AbortSplit on metadata-0's leader)
//	controller.node-report          logpb.NodeReport               rpc/server               Node's report loop (metanode/report.go)
//	metanode.configuration/v2       raftpb.ConfigurationCall       metanode                 Node.leftGroup (replica GC asks the group's leader)
//	metanode.directory/v2           raftpb.DirectoryCall           metanode                 Node.fetchDirectory (a node follows metadata-0's directory)
//	metanode.hash-at/v1             raftpb.HashAtCall              metanode                 group.hashCheck (a leader gathers its voters' digests; hashcheck.go)
//	metanode.fence/v1               raftpb.FenceCall               metanode                 group.hashCheck (a leader fences a replica whose digest differs)
//	metanode.feature-level/v1       raftpb.FeatureLevelCall        metanode                 Node.raiseClusterVersion (metadata-0's leader; version.go)
//	metanode.split-read/v1          logpb.SplitRead                metanode                 Node.copyRange (a split copies the parent's released range; split.go)
//
// A call a node has no handler for is refused INVALID_ARGUMENT wrapping
// transport.ErrUnknownCall, which crosses the wire as REASON_UNKNOWN_CALL:
// a caller tells an older node by errors.Is.
//
// The previous release's names (metanode.transfer-leader,
// metanode.remove-server, metanode.fresh-snapshot, with hand-made
// payloads) are still served for one release, so nodes can be upgraded
// one at a time; this release only sends the /v2 names.
//
// metanode may import sm, sm/state, rocks, rpc/transport, rpc/metapb (the
// routing contract and the error vocabulary), raft and grpc. It must not
// import rpc/server, rpc/client, controller, verify or chaos.
// metanode/metanodetest is the in-process cluster harness for tests.
package metanode
