// Package controller is the part of meta that acts on its own. It runs only
// on the node that leads metadata-0 (after that node's term marker is
// applied) and stops the moment leadership is lost. It:
//
//   - keeps broker heartbeats in memory and declares a broker down, through
//     raft, when it misses them for the configured timeout; a new
//     controller first gives every broker a full timeout of grace, so a
//     leader change never declares live brokers dead;
//   - assigns every connector that should run to one live broker, balanced
//     by load, and rebalances with bounded churn when brokers come and go;
//   - places group replicas on nodes and keeps group leaders spread over
//     them (nodes.go, placement.go);
//   - splits data and offset groups that grow past a size or a load
//     (split.go; the split itself runs on the node, Node.StartSplit).
//
// Every decision is an op whose preconditions the state machine checks in
// apply (broker epoch, assignment epoch, broker alive), so a decision made
// on stale state, or by a deposed controller, changes nothing.
//
// controller talks to its node through the Node interface it declares; it
// may import sm, sm/logpb and rpc/metapb (types), never metanode.
package controller
