package metapb

// Health service names (grpc.health.v1) a node answers besides its gRPC
// services'. The overall status ("") and every meta.v1 service say whether
// the node is ready: every group it hosts has a leader, it is caught up,
// its storage is healthy. HealthStarted says only that the node has
// started (formed or joined its cluster) and has not begun to stop: what
// a process supervisor waits for after starting a node, which a lone
// restarted node can pass while its peers are still down.
const HealthStarted = "meta.node.started"
