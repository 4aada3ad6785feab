package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/metamq/meta/controller"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

// execute runs metabench with args and returns stdout, stderr and the
// error main would print.
func execute(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := command(&stdout, &stderr)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return stdout.String(), stderr.String(), err
}

// executeJSON runs a load command with --output json and decodes its
// result.
func executeJSON(t *testing.T, args ...string) (*Result, error) {
	t.Helper()
	stdout, stderr, err := execute(t, append(args, "--output", "json", "--progress=false")...)
	if stdout == "" {
		return nil, fmt.Errorf("no result (stderr %q): %w", stderr, err)
	}
	var r Result
	if jerr := json.Unmarshal([]byte(stdout), &r); jerr != nil {
		t.Fatalf("decode %q: %v", stdout, jerr)
	}
	return &r, err
}

// flagErrorCase is a command line that fails before any connection is
// made, and what its error must say.
type flagErrorCase struct {
	args []string
	want []string
}

// testFlagErrors runs each case and checks that it fails with an error
// containing every want.
func testFlagErrors(t *testing.T, tests []flagErrorCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, _, err := execute(t, tt.args...)
			if err == nil {
				t.Fatalf("got no error, want one containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestFlagErrors(t *testing.T) {
	// Every case fails before any connection is made, so the endpoints
	// need not exist.
	testFlagErrors(t, []flagErrorCase{
		{[]string{"put", "--batch", "2"}, []string{"--batch: 2", "no batch put"}},
		{[]string{"get", "--batch", "5"}, []string{"no batch get"}},
		{[]string{"get", "--consistency", "serializable"}, []string{"--consistency"}},
		{[]string{"put", "--key-size", "12", "--total", "1000"}, []string{"--key-size 12 is too small"}},
		{[]string{"offsets", "--batch", "20", "--partitions", "10"}, []string{"--batch: 20 is more than --partitions 10"}},
		{[]string{"offsets-fetch", "--consistency", "serializable", "--groups", "0"}, []string{"--consistency", "--groups: 0"}},
		{[]string{"put", "--clients", "0", "--output", "xml", "--target", "zk"}, []string{"--clients", "--output", "--target"}},
		{[]string{"put", "--max-error-rate", "2"}, []string{"--max-error-rate"}},
		{[]string{"put", "extra"}, []string{"unknown command"}},
	})
}

func TestUnreachableClusterFailsFast(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there now
	for _, target := range []string{targetMeta, targetEtcd} {
		t.Run(target, func(t *testing.T) {
			start := time.Now()
			_, _, err := execute(t, "put", "--target", target, "--endpoints", addr, "--timeout", "1s", "--total", "1000000", "--progress=false")
			if err == nil {
				t.Fatalf("got no error, want one saying the cluster does not serve")
			}
			// Not a timing assertion on speed: a run of a million calls
			// that each time out would take hours, a ping takes seconds.
			if took := time.Since(start); took > time.Minute {
				t.Errorf("took %v, want the ping to fail within a minute", took)
			}
		})
	}
}

func TestCompareCommand(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "results.json")
	var buf bytes.Buffer
	for _, r := range []*Result{sampleResult("meta", 256, 60000, 30), sampleResult("etcd", 256, 6000, 100)} {
		if err := r.writeJSON(&buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := execute(t, "compare", path)
	if err != nil {
		t.Fatalf("compare: %v", err)
	}
	if !strings.Contains(out, "10.00x") {
		t.Errorf("compare output: got\n%s\nwant a 10.00x ratio", out)
	}
	if _, _, err := execute(t, "compare", filepath.Join(dir, "missing.json")); err == nil {
		t.Errorf("compare of a missing file: got no error, want one")
	}
}

// startCluster starts an in-process 3-node cluster for a test that runs
// metabench against it (skipped with -short), and returns it and its
// endpoints as --endpoints takes them.
func startCluster(t *testing.T, opts metanodetest.Options) (*metanodetest.Cluster, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	// The tests count every call: leaderships stay where the elections
	// put them (no spreading by the controller mid-run, patient raft
	// timings on a starved machine), and every group has a leader before
	// the first call.
	if opts.Controller == nil {
		opts.Controller = func(cfg *controller.Config) { cfg.SpreadInterval = 0 }
	}
	opts.Patient = true
	c := metanodetest.Start(t, opts)
	for _, g := range metapb.Groups(max(opts.OffsetGroups, 1), max(opts.DataGroups, 1)) {
		c.WaitLeader(g, 30*time.Second)
	}
	return c, strings.Join(c.Endpoints(), ",")
}

// readBack returns a client of c and a context of 30 s for the checks that
// read back what metabench wrote.
func readBack(t *testing.T, c *metanodetest.Cluster) (*client.Client, context.Context) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c.Client(""), ctx
}

func TestAgainstMetaCluster(t *testing.T) {
	c, eps := startCluster(t, metanodetest.Options{})

	// A loaded machine may cost a pass a few puts (an election under
	// load); each pass writes keys 0..199 again, so after one with no
	// failure every key is there. Every pass must count its calls right.
	var res *Result
	for pass := 1; ; pass++ {
		var err error
		res, err = executeJSON(t, "put", "--endpoints", eps, "--clients", "8", "--total", "200", "--key-prefix", "e2e/")
		if res == nil || err != nil && !errors.Is(err, ErrTooManyFailures) {
			t.Fatalf("put: %v", err)
		}
		if res.OK+res.ErrorsDefinite+res.ErrorsUnknown != 200 || res.Items != res.OK || res.Unit != "puts" || res.Target != "meta" || res.Conns != 1 {
			t.Fatalf("put result: got ok %d, errors %d definite %d unknown, items %d unit %s target %s conns %d; want 200 calls counted once, items = ok, puts meta 1",
				res.OK, res.ErrorsDefinite, res.ErrorsUnknown, res.Items, res.Unit, res.Target, res.Conns)
		}
		if res.OK == 200 {
			break
		}
		if pass == 3 {
			t.Fatalf("put: %d passes in a row lost puts (last: %d definite, %d unknown errors)", pass, res.ErrorsDefinite, res.ErrorsUnknown)
		}
		t.Logf("put pass %d: %d definite, %d unknown errors (a loaded machine?); once more", pass, res.ErrorsDefinite, res.ErrorsUnknown)
	}
	cl, ctx := readBack(t, c)
	ks := keySpace{prefix: "e2e/", size: 32}
	for _, i := range []int64{0, 99, 199} {
		resp, err := cl.Get(ctx, &metapb.GetRequest{Key: ks.key(nil, i)})
		if err != nil {
			t.Fatalf("get key %d: %v", i, err)
		}
		if resp.Kv == nil || len(resp.Kv.Value) != 256 {
			t.Errorf("key %d: got %v, want a 256-byte value", i, resp.Kv)
		}
	}

	// Reading the keys put wrote, without loading: none is missing.
	res, err := executeJSON(t, "get", "--endpoints", eps, "--clients", "4", "--total", "100",
		"--key-prefix", "e2e/", "--keys", "200", "--load=false")
	if err != nil || res.OK != 100 || res.Missing != 0 || res.Consistency != "linearizable" {
		t.Errorf("get of put's keys: got %+v, %v; want 100 ok, none missing, linearizable", res, err)
	}

	// Loading then reading stale.
	res, err = executeJSON(t, "get", "--endpoints", eps, "--clients", "4", "--total", "100", "--keys", "30", "--consistency", "stale")
	if err != nil || res.OK != 100 || res.Missing != 0 {
		t.Errorf("stale get: got %+v, %v; want 100 ok, no failures (stale misses allowed: %d)", res, err, res.StaleMisses)
	}

	// Keys nobody wrote are missing, and that fails the run.
	res, err = executeJSON(t, "get", "--endpoints", eps, "--clients", "2", "--total", "50",
		"--key-prefix", "never/", "--keys", "10", "--load=false")
	if !errors.Is(err, ErrTooManyFailures) || res == nil || res.Missing == 0 {
		t.Errorf("get of keys never written: got %+v, %v; want missing keys and %v", res, err, ErrTooManyFailures)
	}

	res, err = executeJSON(t, "offsets", "--endpoints", eps, "--clients", "4", "--total", "95", "--batch", "10",
		"--groups", "3", "--partitions", "10")
	if err != nil || res.Calls != 10 || res.OK != 10 || res.Items != 95 {
		t.Fatalf("offsets: got %+v, %v; want 10 calls carrying 95 offsets", res, err)
	}
	var parts []*metapb.TopicPartition
	for p := range int32(10) {
		parts = append(parts, &metapb.TopicPartition{Group: "bench-group-0", Topic: "bench", Partition: p})
	}
	fetched, err := cl.FetchOffsets(ctx, &metapb.FetchOffsetsRequest{Partitions: parts})
	if err != nil {
		t.Fatalf("fetch offsets: %v", err)
	}
	// Group 0 got calls 0, 3, 6, 9: 10+10+10+5 offsets over 10
	// partitions, so every partition was committed.
	for _, o := range fetched.Offsets {
		if !o.Found {
			t.Errorf("offset of %v: got none, want one committed", o.Partition)
		}
	}

	// offsets-fetch loads every partition of its groups, then finds each
	// one it reads; groups nobody committed to are missing.
	res, err = executeJSON(t, "offsets-fetch", "--endpoints", eps, "--clients", "4", "--total", "100", "--batch", "10",
		"--groups", "3", "--partitions", "120", "--group-prefix", "fetch-")
	if err != nil || res.OK != 10 || res.Items != 100 || res.Missing != 0 {
		t.Errorf("offsets-fetch: got %+v, %v; want 10 calls carrying 100 offsets, none missing", res, err)
	}
	res, err = executeJSON(t, "offsets-fetch", "--endpoints", eps, "--clients", "2", "--total", "20", "--batch", "5",
		"--groups", "2", "--partitions", "10", "--group-prefix", "never-", "--load=false")
	if !errors.Is(err, ErrTooManyFailures) || res == nil || res.Missing == 0 {
		t.Errorf("offsets-fetch of groups never committed: got %+v, %v; want missing offsets and %v", res, err, ErrTooManyFailures)
	}
}

// TestAgainstEtcd drives a one-member etcd with the same workloads. It
// needs the etcd binary (Debian's etcd-server; ci/bench.sh installs it).
func TestAgainstEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd is not installed (apt-get install etcd-server)")
	}
	client, peer := freeAddr(t), freeAddr(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "--name", "e1", "--data-dir", filepath.Join(dir, "e1"),
		"--listen-client-urls", "http://"+client, "--advertise-client-urls", "http://"+client,
		"--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "e1=http://"+peer, "--logger", "zap", "--log-outputs", filepath.Join(dir, "etcd.log"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	waitEtcd(t, client)

	res, err := executeJSON(t, "put", "--target", "etcd", "--endpoints", client, "--clients", "8", "--total", "200")
	if err != nil || res.OK != 200 || res.Target != "etcd" {
		t.Errorf("put: got %+v, %v; want 200 ok on etcd", res, err)
	}
	res, err = executeJSON(t, "get", "--target", "etcd", "--endpoints", client, "--clients", "4", "--total", "100",
		"--key-prefix", "bench/put/", "--keys", "200", "--load=false")
	if err != nil || res.OK != 100 || res.Missing != 0 {
		t.Errorf("get of put's keys: got %+v, %v; want 100 ok, none missing", res, err)
	}
	res, err = executeJSON(t, "get", "--target", "etcd", "--endpoints", client, "--clients", "4", "--total", "100",
		"--keys", "20", "--consistency", "stale")
	if err != nil || res.OK != 100 {
		t.Errorf("serializable get: got %+v, %v; want 100 ok", res, err)
	}
	res, err = executeJSON(t, "offsets", "--target", "etcd", "--endpoints", client, "--clients", "2", "--total", "40",
		"--batch", "4", "--groups", "2", "--partitions", "4")
	if err != nil || res.OK != 10 || res.Items != 40 {
		t.Errorf("offsets: got %+v, %v; want 10 calls carrying 40 offsets", res, err)
	}
	res, err = executeJSON(t, "offsets-fetch", "--target", "etcd", "--endpoints", client, "--clients", "2", "--total", "40",
		"--batch", "4", "--groups", "2", "--partitions", "150", "--consistency", "stale")
	if err != nil || res.OK != 10 || res.Items != 40 || res.StaleMisses != 0 {
		t.Errorf("offsets-fetch: got %+v, %v; want 10 calls carrying 40 offsets, none missing", res, err)
	}
	// Sessions: a batch is one transaction (at most etcd's 128 ops).
	res, err = executeJSON(t, "sessions", "--target", "etcd", "--endpoints", client, "--clients", "3", "--total", "250",
		"--batch", "100")
	if err != nil || res.OK != 3 || res.Items != 250 {
		t.Errorf("sessions: got %+v, %v; want 3 calls carrying 250 sessions", res, err)
	}
	res, err = executeJSON(t, "sessions-list", "--target", "etcd", "--endpoints", client, "--clients", "2", "--total", "250",
		"--batch", "40", "--load=false")
	if err != nil || res.OK != 7 || res.Items != 250 || res.Missing != 0 {
		t.Errorf("sessions-list: got %+v, %v; want 7 pages carrying 250 sessions, none missing", res, err)
	}
	res, err = executeJSON(t, "sessions-list", "--target", "etcd", "--endpoints", client, "--clients", "1", "--total", "300",
		"--batch", "40", "--load=false")
	if !errors.Is(err, ErrTooManyFailures) || res == nil || res.Missing == 0 {
		t.Errorf("sessions-list past the sessions written: got %+v, %v; want missing pages and %v", res, err, ErrTooManyFailures)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitEtcd(t *testing.T, addr string) {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Get(ctx, "health")
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd at %s did not serve within 30s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
