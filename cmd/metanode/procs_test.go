package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/metamq/meta/rpc/client"
)

// procs runs metanode binaries for a test: each node a real process with
// its own data directory, listen address and log file (<dir>/<id>.log,
// appended across restarts). The restore, recovery and upgrade tests
// share it.
type procs struct {
	t   *testing.T
	dir string
	// bin is the binary start runs (newBuiltProcs builds it); run takes
	// any binary.
	bin string
	// ids are the nodes with addresses, in the order they got them;
	// founders those startInitial names in --initial-cluster (all of ids
	// given to newProcs unless a test narrows it).
	ids      []string
	founders []string
	addrs    map[string]string
	nodes    map[string]*proc
}

// proc is one node process; exited is closed once it has exited, err is
// then its exit error.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// newProcs gives the nodes ids addresses (free ports); every node still
// running when the test ends is killed.
func newProcs(t *testing.T, dir string, ids ...string) *procs {
	p := &procs{t: t, dir: dir, addrs: map[string]string{}, nodes: map[string]*proc{}}
	p.alloc(ids...)
	p.founders = append([]string(nil), ids...)
	t.Cleanup(func() {
		for id := range p.nodes {
			p.kill(id)
		}
	})
	return p
}

// newBuiltProcs is newProcs in a fresh directory with this tree's
// metanode built as bin; skipped in -short.
func newBuiltProcs(t *testing.T, ids ...string) *procs {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs metanode processes: not in -short")
	}
	p := newProcs(t, t.TempDir(), ids...)
	p.bin = filepath.Join(p.dir, "metanode")
	runCmd(t, repoRoot(t), "go", "build", "-o", p.bin, "./cmd/metanode")
	return p
}

// nodeIDs is n1..nN.
func nodeIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("n%d", i+1)
	}
	return ids
}

// alloc gives nodes addresses.
func (p *procs) alloc(ids ...string) {
	for i, port := range freePorts(p.t, len(ids)) {
		p.addrs[ids[i]] = fmt.Sprintf("127.0.0.1:%d", port)
		p.ids = append(p.ids, ids[i])
	}
}

func (p *procs) dataDir(id string) string { return filepath.Join(p.dir, id) }
func (p *procs) logPath(id string) string { return filepath.Join(p.dir, id+".log") }

// endpoints are the addresses of ids (of every node when none is named).
func (p *procs) endpoints(ids ...string) []string {
	if len(ids) == 0 {
		ids = p.ids
	}
	eps := make([]string, len(ids))
	for i, id := range ids {
		eps[i] = p.addrs[id]
	}
	return eps
}

// initial is an --initial-cluster value naming ids.
func (p *procs) initial(ids ...string) string {
	ic := make([]string, len(ids))
	for i, id := range ids {
		ic[i] = id + "=" + p.addrs[id]
	}
	return strings.Join(ic, ",")
}

// run starts node id on bin with its identity flags (--id, --data-dir,
// --listen) and flags.
func (p *procs) run(bin, id string, flags ...string) *proc {
	p.t.Helper()
	logf, err := os.OpenFile(p.logPath(id), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	args := append([]string{"--id", id, "--data-dir", p.dataDir(id), "--listen", p.addrs[id]}, flags...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.t.Fatal(err)
	}
	pr := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		pr.err = cmd.Wait()
		logf.Close()
		close(pr.exited)
	}()
	p.nodes[id] = pr
	return pr
}

// start runs node id on p.bin with extra flags, logging at info.
func (p *procs) start(id string, extra ...string) *proc {
	p.t.Helper()
	return p.run(p.bin, id, append([]string{"--log-level", "info"}, extra...)...)
}

// startInitial starts node id, one of the founders, on bin with extra
// flags (two data groups).
func (p *procs) startInitial(id, bin string, extra ...string) *proc {
	p.t.Helper()
	return p.run(bin, id, append([]string{"--initial-cluster", p.initial(p.founders...), "--data-groups", "2"}, extra...)...)
}

// kill stops node id with SIGKILL (no orderly shutdown), stop with
// SIGTERM; both wait for the process to exit.
func (p *procs) kill(id string) { p.signal(id, syscall.SIGKILL) }
func (p *procs) stop(id string) { p.signal(id, syscall.SIGTERM) }

func (p *procs) signal(id string, sig syscall.Signal) {
	pr := p.nodes[id]
	if pr == nil {
		return
	}
	delete(p.nodes, id)
	_ = pr.cmd.Process.Signal(sig)
	<-pr.exited
}

// client is a client of the nodes ids.
func (p *procs) client(ids ...string) *client.Client {
	p.t.Helper()
	return p.newClient(client.Config{Endpoints: p.endpoints(ids...)})
}

// pinned is a client that sends everything to node id.
func (p *procs) pinned(id string) *client.Client {
	p.t.Helper()
	return p.newClient(client.Config{Endpoints: p.endpoints(id), Pinned: true})
}

func (p *procs) newClient(cfg client.Config) *client.Client {
	p.t.Helper()
	cl, err := client.New(cfg)
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { cl.Close() })
	return cl
}
