// Package metanodetest runs clusters of real Meta Nodes inside one test
// process: each node has its own RocksDB in a temporary directory and its
// own gRPC server on a loopback port, exactly as in production. Between the
// nodes sits a fault layer (Net) that can cut, delay, hold and drop the
// traffic of any directed link, and nodes can be crashed, stopped and
// restarted on their data directories.
//
// It also carries the in-process fault runner: a verify.Nemesis over a
// Cluster (nemesis.go; the disk-full, corrupt and upgrade faults in
// nemesis_ops.go) and the seeded runs of verify's workloads and checkers
// against it (runner_test.go, ops_runner_test.go; planted bugs in
// bugs_test.go under the metabugs tag).
//
// It is a test harness: production code never imports it. It may import
// metanode, controller, rpc/server, rpc/client, rpc/metapb, sm/logpb and
// verify.
package metanodetest
