package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metamq/meta/chaos"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify/poll"
)

// previousRelease is the last commit before groups were placed on replica
// sets (every node hosted every group): the layout an upgrade starts from.
const previousRelease = "b42050f"

// Data directories written by the previous release (every node hosts
// every group, no directory) open under this code with no manual step: the
// cluster serves what was written, and gets a directory whose replica sets
// are every member. The old binary is built from the repository's history.
func TestUpgradeFromEveryNodeHostsEveryGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the previous release: not in -short")
	}
	dir, oldBin, newBin := buildReleases(t, previousRelease)

	p := newProcs(t, dir, nodeIDs(3)...)
	ctx := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	cl := p.client()

	for _, id := range p.ids {
		p.startInitial(id, oldBin)
	}
	poll.For(t, "the previous release's cluster to serve", 60*time.Second, func() error {
		_, err := cl.Put(ctx(), &metapb.PutRequest{Key: []byte("warm"), Value: []byte("1")})
		return err
	})
	for i := range 50 {
		k := fmt.Sprintf("k%02d", i)
		if _, err := cl.Put(ctx(), &metapb.PutRequest{Key: []byte(k), Value: []byte(k)}); err != nil {
			t.Fatalf("put %s on the previous release: %v", k, err)
		}
	}
	for _, id := range p.ids {
		p.stop(id)
	}

	for _, id := range p.ids {
		p.startInitial(id, newBin)
	}
	cl2 := p.client()
	var gs *metapb.ListGroupsResponse
	var err error
	poll.For(t, "the upgraded cluster's directory", 90*time.Second, func() error {
		gs, err = cl2.ListGroups(ctx())
		if err != nil {
			return err
		}
		if len(gs.Groups) != 4 {
			return fmt.Errorf("%d groups", len(gs.Groups))
		}
		return nil
	})
	for _, g := range gs.Groups {
		if len(g.Replicas) != 3 {
			t.Fatalf("%s: replicas %v, want every member", g.Group, g.Replicas)
		}
	}
	for i := range 50 {
		k := fmt.Sprintf("k%02d", i)
		got, err := cl2.Get(ctx(), &metapb.GetRequest{Key: []byte(k)})
		if err != nil || got.Kv == nil || string(got.Kv.Value) != k {
			t.Fatalf("get %s after the upgrade: %v, %v", k, got, err)
		}
	}
	if _, err := cl2.Put(ctx(), &metapb.PutRequest{Key: []byte("after"), Value: []byte("1")}); err != nil {
		t.Fatalf("put after the upgrade: %v", err)
	}
	t.Logf("upgraded: %d groups, RF %d; every key written by %s reads back", len(gs.Groups), gs.ReplicationFactor, previousRelease)
}

func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("!!! not in a git checkout: upgrade not tested: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// buildReleases builds cmd/metanode as it was at commit and as it is,
// into a new temporary directory; it skips the test when commit is not in
// this clone's history.
func buildReleases(t *testing.T, commit string) (dir, oldBin, newBin string) {
	t.Helper()
	root := repoRoot(t)
	if err := exec.Command("git", "-C", root, "rev-parse", "--verify", commit+"^{commit}").Run(); err != nil {
		t.Skipf("!!! the previous release %s is not in this clone's history (a shallow clone?): upgrade not tested", commit)
	}
	dir = t.TempDir()
	oldBin = buildAt(t, root, commit, dir)
	newBin = filepath.Join(dir, "metanode-new")
	runCmd(t, root, "go", "build", "-o", newBin, "./cmd/metanode")
	return dir, oldBin, newBin
}

// buildAt builds cmd/metanode as it was at commit.
func buildAt(t *testing.T, root, commit, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "metanode-"+commit)
	if err := chaos.BuildRelease(t.Context(), root, commit, bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

func runCmd(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}
