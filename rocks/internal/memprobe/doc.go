// Command memprobe measures the memory of a rocks.DB as it fills: it writes
// N keys (32-byte keys, 200-byte incompressible values) through batches into
// one group's data space, then reads a sample back, and prints RocksDB's own
// account (rocks.MemoryUsage) next to the process RSS (VmRSS from
// /proc/self/status) and the Go heap at each stage. It is a measuring tool
// for people, not a test: it asserts nothing.
//
//	go run ./rocks/internal/memprobe -keys 2000000
package main
