// Package metanodetest runs clusters of real Meta Nodes inside one test
// process: each node has its own RocksDB in a temporary directory and its
// own gRPC server on a loopback port, exactly as in production. Between the
// nodes sits a fault layer (Net) that can cut, delay, hold and drop the
// traffic of any directed link, and nodes can be crashed, stopped and
// restarted on their data directories.
//
// It is a test harness: production code never imports it. It may import
// metanode, rpc/server, rpc/client and verify.
package metanodetest
