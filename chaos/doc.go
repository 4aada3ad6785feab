// Package chaos runs real meta nodes in Docker containers and breaks them
// the way production breaks them: kill -9, SIGTERM, pause (cgroup freezer),
// and network faults applied from the host inside each container's network
// namespace (isolation, majority/minority and arbitrary partitions, bridges,
// one-way drops, packet loss and delay).
//
// It owns: building a node image from a binary (BuildImage), the container
// cluster of one run (StartCluster, Cluster), the network fault mechanisms
// (netfault.go, nfqueue.go), node log capture, the sweeper that removes
// what earlier runs left behind (Sweep), the verify.Nemesis over a cluster
// (Nemesis: every fault kind of verify's contract but crashpoint), the
// schedule with heal allowances (Schedule), one checked run and its folder
// (Run: run.json, plots, index.html, the "nodes" checker on top of
// verify's, whose recovery windows follow every heal), and the summary of
// a suite of runs (Tally: verdicts, judged/total per checker, coverage
// gaps, recovery times). The workloads and checkers are verify's.
// README.md describes the nemeses, how to run them and how to read a run
// folder.
//
// It sees the system only as a broker does. It may import verify, the public
// client (rpc/client, rpc/metapb), testcontainers-go and the Docker client.
// It must not import metanode, sm, rocks or rpc/transport: a harness that
// shares the server's internals could share its bugs.
//
// # Requirements on the host
//
// A reachable Docker engine; root (nsenter into container network
// namespaces and NFQUEUE need CAP_SYS_ADMIN and CAP_NET_ADMIN); nsenter,
// iptables-restore and ldd on PATH. There is no container registry, so
// nothing is ever pulled: images are built FROM scratch from local files,
// and the testcontainers Ryuk reaper must be disabled
// (TESTCONTAINERS_RYUK_DISABLED=true, set by the caller in cmd/ or in a
// test's TestMain). Instead of Ryuk, every container and network carries
// the labels described in labels.go, Cluster.Terminate removes what its run
// created, and Sweep removes what a dead process left.
package chaos
