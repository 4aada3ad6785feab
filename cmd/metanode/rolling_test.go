package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// caughtUp waits until node id answers linearizable reads of keys in every
// data group (a read on a follower waits for its replica to apply up to
// the leader's commit index).
func (p *procs) caughtUp(id string, within time.Duration) {
	p.t.Helper()
	cl := p.pinned(id)
	poll.For(p.t, id+" to serve linearizable reads", within, func() error {
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

	p := newProcs(t, dir, nodeIDs(3)...)
	for _, id := range p.ids {
		p.startInitial(id, oldBin, "--hash-check-interval", "1s")
	}
	for _, id := range p.ids {
		p.caughtUp(id, 90*time.Second)
	}

	// The workload: sessions over the whole cluster putting unique values
	// and reading a few keys linearizably, recorded for the checker.
	clk, hist := verify.NewClock(), &verify.History{}
	rec := verify.NewRecorder(clk, hist, 2*time.Second)
	wctx, stopWorkload := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for s := range 4 {
		sess := rec.Session(p.client(), "any")
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

	for i, id := range p.ids {
		p.stop(id)
		p.startInitial(id, newBin, "--hash-check-interval", "1s")
		p.caughtUp(id, 90*time.Second)
		if i < 2 {
			// Mixed releases: refused by the upgraded node before any
			// proposal, with the documented error.
			if err := clusterVersionRefusal(multiPut(p.pinned(id), fmt.Sprint(i)), "1", "2"); err != nil {
				t.Fatalf("after upgrading %s of 3: %v", id, err)
			}
		}
	}
	// Every node runs this release: metadata-0's leader raises the cluster
	// version, and MultiPut works through every node.
	for _, id := range p.ids {
		cl := p.pinned(id)
		poll.For(t, "MultiPut through "+id+" after the upgrade", 60*time.Second, func() error {
			return multiPut(cl, "after-"+id)
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
	for _, id := range p.ids {
		raw, err := os.ReadFile(p.logPath(id))
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"written by a newer release", "halted"} {
			if strings.Contains(string(raw), bad) {
				t.Fatalf("%s's log says %q: a replica stopped on an entry of the new release", id, bad)
			}
		}
	}
	t.Logf("rolling upgrade %s -> this release: %d ops (%d ok), linearizable; MultiPut refused while mixed, served after", rollingFrom, len(ops), okOps)
}

// exitsWith waits for node id's process pr, which must refuse to start,
// and checks its log says why.
func (p *procs) exitsWith(t *testing.T, pr *proc, id, want string) {
	t.Helper()
	select {
	case <-pr.exited:
		if pr.err == nil {
			t.Fatalf("%s exited 0, want a refusal", id)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("%s still runs after 60s, want it to refuse to start", id)
	}
	delete(p.nodes, id)
	raw, err := os.ReadFile(p.logPath(id))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.Contains(line, want) {
			t.Logf("%s refused: %s", id, line)
			return
		}
	}
	t.Fatalf("%s's log lacks %q:\n%s", id, want, raw)
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
	p := newProcs(t, dir, nodeIDs(4)...)
	p.founders = p.ids[:3]
	for _, id := range p.founders {
		p.startInitial(id, bin)
	}
	cl := p.pinned("n1")
	poll.For(t, "the cluster version to rise (MultiPut served)", 90*time.Second, func() error { return multiPut(cl, "v") })
	// Below the level MultiPut needs (which the poll saw served): the
	// cluster version is at least that, whether or not it has risen to
	// this release's level yet.
	below := fmt.Sprint(sm.BaseLevel)

	// A downgrade of a member's binary.
	p.stop("n3")
	p.exitsWith(t, p.startInitial("n3", bin, "--feature-level", below), "n3", "a downgrade below the cluster version is refused")
	p.startInitial("n3", bin)
	p.caughtUp("n3", 90*time.Second)

	// A new member below the cluster version.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cl.AddMember(ctx, "n4", p.addrs["n4"]); err != nil {
		t.Fatal(err)
	}
	join := func(extra ...string) *proc {
		return p.run(bin, "n4", append([]string{"--join", strings.Join(p.endpoints(p.founders...), ",")}, extra...)...)
	}
	p.exitsWith(t, join("--feature-level", below), "n4", "join refused")
	if err := os.RemoveAll(p.dataDir("n4")); err != nil {
		t.Fatal(err)
	}
	join()
	p.caughtUp("n4", 90*time.Second)
}
