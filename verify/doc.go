// Package verify checks that meta keeps its promises: every operation is
// linearizable and no acknowledged write is lost, whatever faults hit the
// cluster.
//
// It owns the recording client (Session, BrokerSession) and the history
// formats (Op and BrokerOp, JSON lines), the porcupine models and checkers
// for the KV and offsets APIs and for MQTT sessions, the watch checker
// (ordered, no gaps, no duplicates, resumable, nothing invented) and the
// controller checker (assignment epochs, fencing, nothing on a down
// broker, assignment within a bound), the ownership checker (which group
// served each key at which range version), the final-state checks (final
// reads, replica convergence, placement, the groups' own ranges), seeded workload generators (KV, offsets,
// and opt-in broker workloads: sessions, watchers, simulated brokers), the
// description of faults shared by every fault injector (Fault, Schedule,
// Nemesis), the run orchestrator (Run) and the run folder (history.jsonl,
// broker.jsonl, watch.jsonl, faults.jsonl, summary.json, report.html) that
// cmd/metaverify re-checks offline.
//
// verify sees the system only as a broker does. It may import the public
// client (rpc/client), the public protos (rpc/metapb), porcupine and
// general libraries. It must never import metanode, sm, rocks,
// rpc/transport or any other server internal, so that it cannot share the
// server's bugs. Fault injectors (the in-process harness, chaos/) import
// verify, never the other way round.
package verify
