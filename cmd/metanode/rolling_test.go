package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/verify"
	"github.com/metamq/meta/verify/poll"
)

// rollingFrom is the release a rolling upgrade starts from: the last
// commit before KVPuts and KVTxn (the first operations gated by the
// cluster version), whose nodes carry no feature level (the base level).
// An older one (previousRelease) places no groups on replica sets, which
// this release's nodes would change under it: that upgrade stops every
// node (TestUpgradeFromEveryNodeHostsEveryGroup).
const rollingFrom = "ec15d02"

// procs is a cluster of metanode processes on this machine.
type procs struct {
	t    *testing.T
	dir  string
	ic   []string
	eps  []string
	cmds map[string]*exec.Cmd
}

func newProcs(t *testing.T, dir string, n int) *procs {
	p := &procs{t: t, dir: dir, cmds: map[string]*exec.Cmd{}}
	for i, port := range freePorts(t, n) {
		p.ic = append(p.ic, fmt.Sprintf("n%d=127.0.0.1:%d", i+1, port))
		p.eps = append(p.eps, fmt.Sprintf("127.0.0.1:%d", port))
	}
	t.Cleanup(func() {
		for _, c := range p.cmds {
			_ = c.Process.Kill()
			_, _ = c.Process.Wait()
		}
	})
	return p
}

// start starts node i (0-based), a member of the initial cluster, on bin
// with extra flags.
func (p *procs) start(i int, bin string, extra ...string) *exec.Cmd {
	p.t.Helper()
	return p.run(i, bin, append([]string{"--initial-cluster", strings.Join(p.ic, ","), "--data-groups", "2"}, extra...)...)
}

// run starts node i on bin with its id, data directory, listen address
// and flags; its output goes to <dir>/n<i+1>.log (appended).
func (p *procs) run(i int, bin string, flags ...string) *exec.Cmd {
	p.t.Helper()
	id := fmt.Sprintf("n%d", i+1)
	logf, err := os.OpenFile(p.logPath(i), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	args := append([]string{"--id", id, "--data-dir", filepath.Join(p.dir, id), "--listen", p.eps[i]}, flags...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { logf.Close() })
	p.cmds[id] = cmd
	return cmd
}

func (p *procs) logPath(i int) string { return filepath.Join(p.dir, fmt.Sprintf("n%d.log", i+1)) }

// stop stops node i with SIGTERM and waits for it.
func (p *procs) stop(i int) {
	id := fmt.Sprintf("n%d", i+1)
	if c := p.cmds[id]; c != nil {
		_ = c.Process.Signal(syscall.SIGTERM)
		_, _ = c.Process.Wait()
		delete(p.cmds, id)
	}
}

// pinned is a client that sends everything to node i.
func (p *procs) pinned(i int) *client.Client {
	p.t.Helper()
	cl, err := client.New(client.Config{Endpoints: []string{p.eps[i]}, Pinned: true})
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { cl.Close() })
	return cl
}

// caughtUp waits until node i answers linearizable reads of keys in every
// data group (a read on a follower waits for its replica to apply up to
// the leader's commit index).
func (p *procs) caughtUp(i int, within time.Duration) {
	p.t.Helper()
	cl := p.pinned(i)
	poll.For(p.t, fmt.Sprintf("n%d to serve linearizable reads", i+1), within, func() error {
		for k := range 8 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := cl.Get(ctx, &metapb.GetRequest{Key: fmt.Appendf(nil, "probe-%d", k)})
			cancel()
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// multiPut puts two keys (in different groups, most likely) through node i.
func multiPut(cl *client.Client, tag string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := cl.MultiPut(ctx, &metapb.MultiPutRequest{Puts: []*metapb.PutRequest{
		{Key: []byte("mp-a-" + tag), Value: []byte(tag)}, {Key: []byte("mp-b-" + tag), Value: []byte(tag)}}})
	return err
}

// clusterVersionRefusal checks err is the documented refusal:
// FailedPrecondition, reason CLUSTER_VERSION, naming both versions.
func clusterVersionRefusal(err error, have, need string) error {
	if err == nil {
		return errors.New("MultiPut applied in a cluster of mixed releases")
	}
	st, _ := status.FromError(err)
	if st.Code() != codes.FailedPrecondition {
		return fmt.Errorf("MultiPut: got %v, want FailedPrecondition", err)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Reason == metapb.ReasonClusterVersion {
			if info.Metadata[metapb.MetaClusterVersion] != have || info.Metadata[metapb.MetaRequiredVersion] != need {
				return fmt.Errorf("MultiPut refusal's metadata %v, want cluster_version %s, required_version %s", info.Metadata, have, need)
			}
			return nil
		}
	}
	return fmt.Errorf("MultiPut: %v has no ErrorInfo with reason %s", err, metapb.ReasonClusterVersion)
}

// A rolling upgrade from the previous release (rollingFrom) to this one,
// node by node, under a recorded KV workload checked for linearizability:
// while releases are mixed, MultiPut (KVPuts, which the previous release
// cannot apply) is refused with CLUSTER_VERSION and no replica halts;
// once every node runs this release the cluster version rises and
// MultiPut works.
func TestRollingUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the previous release: not in -short")
	}
	dir, oldBin, newBin := buildReleases(t, rollingFrom)

	p := newProcs(t, dir, 3)
	for i := range 3 {
		p.start(i, oldBin, "--hash-check-interval", "1s")
	}
	for i := range 3 {
		p.caughtUp(i, 90*time.Second)
	}

	// The workload: sessions over the whole cluster putting unique values
	// and reading a few keys linearizably, recorded for the checker.
	clk, hist := verify.NewClock(), &verify.History{}
	rec := verify.NewRecorder(clk, hist, 2*time.Second)
	wctx, stopWorkload := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for s := range 4 {
		cl, err := client.New(client.Config{Endpoints: p.eps})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		sess := rec.Session(cl, "any")
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(s), 7))
			for wctx.Err() == nil {
				key := fmt.Sprintf("w%d", r.IntN(6))
				if r.IntN(2) == 0 {
					sess.Put(wctx, key, sess.NextValue())
				} else {
					sess.Get(wctx, key, false)
				}
			}
		}()
	}
	defer func() { stopWorkload(); wg.Wait() }()

	for i := range 3 {
		p.stop(i)
		p.start(i, newBin, "--hash-check-interval", "1s")
		p.caughtUp(i, 90*time.Second)
		if i < 2 {
			// Mixed releases: refused by the upgraded node before any
			// proposal, with the documented error.
			if err := clusterVersionRefusal(multiPut(p.pinned(i), fmt.Sprint(i)), "1", "2"); err != nil {
				t.Fatalf("after upgrading n%d of 3: %v", i+1, err)
			}
		}
	}
	// Every node runs this release: metadata-0's leader raises the cluster
	// version, and MultiPut works through every node.
	for i := range 3 {
		cl := p.pinned(i)
		poll.For(t, fmt.Sprintf("MultiPut through n%d after the upgrade", i+1), 60*time.Second, func() error {
			return multiPut(cl, fmt.Sprint("after-", i))
		})
	}
	stopWorkload()
	wg.Wait()

	ops := hist.Ops()
	okOps := 0
	for _, op := range ops {
		if op.Outcome == verify.OutcomeOK {
			okOps++
		}
	}
	if okOps < 50 {
		t.Fatalf("only %d of %d recorded ops succeeded: the cluster did not keep serving", okOps, len(ops))
	}
	for _, r := range verify.CheckLinearizability(ops, time.Minute).Results {
		if r.Verdict != verify.Valid {
			t.Fatalf("checker %s: %s: %s", r.Checker, r.Verdict, r.Details)
		}
	}
	for i := range 3 {
		raw, err := os.ReadFile(p.logPath(i))
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"written by a newer release", "halted"} {
			if strings.Contains(string(raw), bad) {
				t.Fatalf("n%d's log says %q: a replica stopped on an entry of the new release", i+1, bad)
			}
		}
	}
	t.Logf("rolling upgrade %s -> this release: %d ops (%d ok), linearizable; MultiPut refused while mixed, served after", rollingFrom, len(ops), okOps)
}

// exitsWith waits for a node process that must refuse to start and checks
// its log says why.
func (p *procs) exitsWith(t *testing.T, cmd *exec.Cmd, i int, want string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("n%d exited 0, want a refusal", i+1)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("n%d still runs after 60s, want it to refuse to start", i+1)
	}
	delete(p.cmds, fmt.Sprintf("n%d", i+1))
	raw, err := os.ReadFile(p.logPath(i))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.Contains(line, want) {
			t.Logf("n%d refused: %s", i+1, line)
			return
		}
	}
	t.Fatalf("n%d's log lacks %q:\n%s", i+1, want, raw)
}

// Once the cluster version is this release's, a node whose feature level
// is below it refuses to start on its data directory, and a new member
// below it is refused when it joins: either could not apply what the
// cluster proposes now. A node of this release that says it is one level
// below (--feature-level) stands for the previous release here, whose
// binary predates the check. At its own level the node starts again.
func TestDowngradeBelowClusterVersionRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes: not in -short")
	}
	root := repoRoot(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "metanode-new")
	runCmd(t, root, "go", "build", "-o", bin, "./cmd/metanode")
	p := newProcs(t, dir, 4)
	p.ic = p.ic[:3]
	for i := range 3 {
		p.start(i, bin)
	}
	cl := p.pinned(0)
	poll.For(t, "the cluster version to rise (MultiPut served)", 90*time.Second, func() error { return multiPut(cl, "v") })
	below := fmt.Sprint(sm.FeatureLevel - 1)

	// A downgrade of a member's binary.
	p.stop(2)
	p.exitsWith(t, p.start(2, bin, "--feature-level", below), 2, "a downgrade below the cluster version is refused")
	p.start(2, bin)
	p.caughtUp(2, 90*time.Second)

	// A new member below the cluster version.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cl.AddMember(ctx, "n4", p.eps[3]); err != nil {
		t.Fatal(err)
	}
	join := func(extra ...string) *exec.Cmd {
		return p.run(3, bin, append([]string{"--join", strings.Join(p.eps[:3], ",")}, extra...)...)
	}
	p.exitsWith(t, join("--feature-level", below), 3, "join refused")
	if err := os.RemoveAll(filepath.Join(dir, "n4")); err != nil {
		t.Fatal(err)
	}
	join()
	p.caughtUp(3, 90*time.Second)
}
