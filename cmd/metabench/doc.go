// Command metabench measures a meta cluster, or an etcd cluster with the
// same load generator, so the two can be compared side by side.
//
//	metabench put     [--clients N] [--total N] [--key-size B] [--value-size B]
//	metabench get     [--keys N] [--consistency linearizable|stale] ...
//	metabench offsets [--groups G] [--partitions P] [--batch B] ...
//	metabench offsets-fetch [--groups G] [--partitions P] [--batch B] [--load=false] [--consistency C] ...
//	metabench sessions [--batch B] [--broker ID] [--expiry-seconds S] ...
//	metabench sessions-list [--batch PAGE] [--load=false] [--consistency C] ...
//	metabench compare RESULT.json...
//	metabench mqtt --brokers HOST:PORT,... [--clients N] [--parallel P] [--reconnect]
//
// Every load command takes --target meta|etcd (default meta) and
// --endpoints (default: the cluster `make run` starts for meta, the cluster
// ci/bench.sh starts for etcd). --clients goroutines each keep one request
// in flight; they share --conns client connections (default one per 16
// clients), as real brokers share a few connections. --total counts items:
// keys for put and get, offsets for offsets, sessions for sessions and
// sessions-list; a call carries --batch items where the API has batches
// (default 100 for sessions, 1000 for sessions-list, 1 otherwise), so an
// offsets run makes total/batch calls.
// put and get send one key per call (the KV API has no batch put or get),
// so they reject --batch other than 1.
//
// Workloads. put writes unique keys: key i is --key-prefix followed by i in
// decimal, zero-padded to exactly --key-size bytes, for i in [0, total).
// get first loads --keys such keys (not timed; --load=false reuses keys an
// earlier run loaded with the same prefix, sizes and count) and then reads
// keys chosen uniformly at random from them. offsets commits to --groups
// consumer groups times --partitions partitions of one topic: call s commits
// --batch consecutive partitions of consumer group s mod groups.
// offsets-fetch first commits every partition of every group (in calls of
// up to 100 partitions, not timed; --load=false reuses what an earlier run
// committed with the same flags), then each call fetches --batch
// consecutive partitions (wrapping) of a consumer group, group and first
// partition drawn at random, as a consumer joining a group does; a
// partition without an offset is missing (a stale miss for --consistency
// stale). sessions
// creates new MQTT sessions, one PutSessions call of --batch sessions per
// call: call s writes sessions s*batch .. s*batch+batch-1, session i having
// client id i of the key space (--key-prefix, default "bench-session-",
// zero-padded to --key-size), so every client id is written once in a run;
// each is connected, held by --broker, with --expiry-seconds as its expiry
// interval (which only counts once a client disconnects) and --value-size
// random letters as its state. sessions-list pages through --total
// sessions of such a key space with ListSessions, --batch per page: page s
// starts after client id s*batch-1 (the first after the bare prefix), so
// pages are known without listing the ones before and --clients workers
// can list concurrently (--clients 1 pages through in order). Each page
// must hold exactly the client ids the key space puts there, say whether
// more follow, and give its last id as the next page's cursor; a page that
// does not counts as missing. It first loads the sessions (in calls of up
// to 1000, not timed) unless --load=false, which lists what an earlier
// sessions run wrote with the same --key-prefix, --key-size and --total.
// Values are random letters drawn from --seed, which also seeds the random
// key choice, so two runs with the same flags send the same requests.
//
// On etcd, put is an etcd Put, get an etcd Get (linearizable, or
// serializable for --consistency stale), offsets one Txn of --batch Puts,
// which like meta's offset commit is atomic, and sessions one Txn of
// --batch Puts of "sessions/" + client id, each value the session encoded
// as meta's metapb.Session (etcd refuses a Txn of more than its
// --max-txn-ops, 128 by default); sessions-list is a range Get of keys
// only, limited to the page.
//
// Results. Latency is measured per call, from just before the call to its
// return, for successful calls only, in an HDR histogram (1 µs to 1 min,
// three significant digits). Throughput is successful items per second of
// wall-clock time from the first call to the last return. Failures are
// counted apart: "definite" means the cluster certainly did not apply the
// call, "unknown" means a write may or may not have been applied (meta's
// client reports it with client.IsUnknown; for etcd a write that timed out,
// was cancelled or lost its connection counts as unknown), and "missing"
// counts linearizable reads that found no value for a key get had loaded
// (and sessions-list pages that lacked a loaded session). error_kinds
// counts the failures by outcome and kind (the gRPC code and meta's
// reason, e.g. "definite Unavailable WRONG_GROUP"), so a run can show what
// failed, not only the first error.
// Reads never have unknown outcomes. A stale read that finds nothing is
// not a failure (the replica it asked may not have caught up with the
// load yet): it counts as a successful call and in stale_misses. The command exits with status 1 when more than
// --max-error-rate of the calls failed (failed and missing together); it
// stops early once that fraction can no longer be met.
//
// Output. The text report is a few lines for people. With --output json it
// prints one JSON object (see Result for every field) on one line, so
// results can be appended to a file and given to `metabench compare`, which
// prints a side-by-side table with one row per workload and client count
// and one column group per target (or --label).
//
// --duration D ends the timed phase after D even if --total items were not
// sent (give a large --total to run for a fixed time); --series FILE writes
// one CSV line a second with the items and failures of that second, for a
// plot of throughput over time (ci/scaleout.sh plots it through a
// rebalance). An interrupted run (SIGINT) still leaves the series written
// so far.
//
// A progress line is written to stderr once a second while a run lasts (a
// carriage-return line on a terminal, plain lines otherwise); --progress=false
// turns it off. The report includes the CPU time metabench itself used
// while timed, because on a small machine the load generator takes cores
// from the cluster; --cpuprofile FILE writes its CPU profile.
//
// ci/memsessions.sh uses sessions and sessions-list to load millions of
// sessions into the `make run` cluster and record the nodes' memory.
//
// Adding a workload:
// write a workload (workload.go) whose calls assert the small interface
// they need from a connection (declared next to the workload, like putter),
// implement that interface on the targets that support it, and add a
// subcommand that builds the workload from its flags. The runner, the
// report and compare need no change: unit names what an item is
// ("sessions"), and items per second is the figure to quote.
//
// metabench imports only the public client (rpc/client, rpc/metapb) and
// etcd's client; never the server's packages, except that its tests start
// an in-process cluster with metanode/metanodetest.
package main
