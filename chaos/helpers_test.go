package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"go.uber.org/goleak"

	"github.com/metamq/meta/verify/poll"
)

const standinPort = 7000

// tmpRoot holds the stand-in binary; made in TestMain.
var tmpRoot string

func TestMain(m *testing.M) {
	// No registry: the reaper image cannot be pulled. Set before the first
	// testcontainers call, which reads its configuration once.
	os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helperMain(mode))
	}
	var err error
	tmpRoot, err = os.MkdirTemp("", "chaos-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmpRoot)
	if code == 0 {
		if err := goleak.Find(goleakOpts...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

var goleakOpts = []goleak.Option{
	// The Docker client's keep-alive connections.
	goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
}

var (
	dockerOnce sync.Once
	dockerErr  error
)

// requireDocker skips the test, loudly, when no Docker engine answers.
func requireDocker(t testing.TB) {
	t.Helper()
	dockerOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		dc, err := testcontainers.NewDockerClientWithOpts(ctx)
		if err == nil {
			_, err = dc.Ping(ctx, client.PingOptions{})
			dc.Close()
		}
		dockerErr = err
	})
	if dockerErr != nil {
		t.Skipf("SKIPPED: NO DOCKER ENGINE REACHABLE (%v): the chaos container tests did not run", dockerErr)
	}
}

// requireTools fails the test when the host lacks what network faults need.
func requireTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"nsenter", "iptables-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("network faults need %s on PATH: %v", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: network faults need root (nsenter, NFQUEUE)")
	}
}

var (
	standinOnce sync.Once
	standinBin  string
	standinErr  error
	imageOnce   sync.Once
	image       Image
	imageErr    error
)

// standin builds testdata/standin once per test binary, dynamically linked
// (cgo is on, so the net package links libc) to exercise the ldd path.
func standin(t testing.TB) string {
	t.Helper()
	standinOnce.Do(func() { standinBin, standinErr = buildStandin("standin") })
	if standinErr != nil {
		t.Fatal(standinErr)
	}
	return standinBin
}

// buildStandin builds the stand-in into tmpRoot/name with the build tags.
func buildStandin(name string, tags ...string) (string, error) {
	bin := filepath.Join(tmpRoot, name)
	args := []string{"build", "-o", bin}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	cmd := exec.Command("go", append(args, "./testdata/standin")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", name, err, out)
	}
	return bin, nil
}

func standinImage(t testing.TB) Image {
	t.Helper()
	bin := standin(t)
	imageOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		image, imageErr = BuildImage(ctx, bin, ImageOptions{Log: testLogger(t)})
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return image
}

func standinArgs(node string) []string {
	return []string{"-name", node, "-port", fmt.Sprint(standinPort), "-data", DefaultDataPath}
}

// testLogger logs to t at info level and above. Nothing may log after the
// test ends; clusters are terminated in t.Cleanup, before that.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startStandins starts an n-node stand-in cluster and terminates it at
// cleanup, checking that nothing of the run is left.
func startStandins(t testing.TB, n int) *Cluster {
	t.Helper()
	requireDocker(t)
	img := standinImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := StartCluster(ctx, Options{
		Nodes:  n,
		Image:  img.Tag,
		RunDir: t.TempDir(),
		Port:   standinPort,
		Args:   standinArgs,
		Log:    testLogger(t),
	})
	if err != nil {
		t.Fatalf("StartCluster: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := c.Terminate(ctx); err != nil {
			t.Errorf("Terminate: %v", err)
		}
		if left := leftovers(t, c.RunID()); len(left) > 0 {
			t.Errorf("after Terminate, objects of run %s left: %v", c.RunID(), left)
		}
	})
	return c
}

// leftovers lists containers, networks and volumes carrying the run label.
func leftovers(t testing.TB, runID string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dc, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	defer dc.Close()
	f := make(client.Filters).Add("label", LabelRun+"="+runID)
	var out []string
	ctrs, err := dc.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	for _, c := range ctrs.Items {
		out = append(out, "container "+strings.Join(c.Names, ","))
	}
	nets, err := dc.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		t.Fatalf("list networks: %v", err)
	}
	for _, n := range nets.Items {
		out = append(out, "network "+n.Name)
	}
	vols, err := dc.VolumeList(ctx, client.VolumeListOptions{Filters: f})
	if err != nil {
		t.Fatalf("list volumes: %v", err)
	}
	for _, v := range vols.Items {
		out = append(out, "volume "+v.Name)
	}
	return out
}

// nodeClient talks to stand-ins over their host endpoints. Its checking
// methods take the (sub)test that is asking.
type nodeClient struct {
	c  *Cluster
	hc *http.Client
}

// mustHeal heals the network of the cluster and checks that every node of
// nodes reaches every other again.
func (nc *nodeClient) mustHeal(t *testing.T, ctx context.Context, nodes []string) {
	t.Helper()
	if err := nc.c.HealNetwork(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := nc.matrix(t, ctx), fullMatrix(nodes); diffMatrix(got, want) != "" {
		t.Fatalf("after HealNetwork:%s", diffMatrix(got, want))
	}
}

// restart kills name (SIGKILL) and starts it again.
func restart(tb testing.TB, ctx context.Context, c *Cluster, name string) {
	tb.Helper()
	if err := c.Kill(ctx, name); err != nil {
		tb.Fatal(err)
	}
	if err := c.Start(ctx, name); err != nil {
		tb.Fatal(err)
	}
}

// waitLog waits up to 30 s until ok holds of name's log; what says what
// for, in the failure.
func waitLog(t testing.TB, c *Cluster, name, what string, ok func(log string) bool) {
	t.Helper()
	logPath, _ := c.LogPath(name)
	poll.For(t, what, 30*time.Second, func() error {
		b, _ := os.ReadFile(logPath)
		return poll.Check(ok(string(b)), string(b))
	})
}

func newNodeClient(t *testing.T, c *Cluster) *nodeClient {
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &nodeClient{c: c, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (nc *nodeClient) do(ctx context.Context, method, node, path string, body io.Reader) (int, []byte, error) {
	ep, err := nc.c.Endpoint(node)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+ep+path, body)
	if err != nil {
		return 0, nil, err
	}
	resp, err := nc.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (nc *nodeClient) mustDo(t *testing.T, ctx context.Context, method, node, path string, body io.Reader) []byte {
	t.Helper()
	code, b, err := nc.do(ctx, method, node, path, body)
	if err != nil {
		t.Fatalf("%s %s%s: %v", method, node, path, err)
	}
	if code != http.StatusOK {
		t.Fatalf("%s %s%s: got status %d (%s), want 200", method, node, path, code, b)
	}
	return b
}

// matrix measures one-way reachability between every ordered pair of nodes:
// every node sends datagrams to every other for a second, then each reports
// whom it heard. reach[from] is the sorted list of nodes that heard from.
func (nc *nodeClient) matrix(t *testing.T, ctx context.Context) map[string][]string {
	t.Helper()
	nodes := nc.c.Nodes()
	round := fmt.Sprintf("r%d", time.Now().UnixNano())
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		others := slices.DeleteFunc(slices.Clone(nodes), func(s string) bool { return s == n })
		wg.Go(func() {
			code, b, err := nc.do(ctx, http.MethodPost, n, "/blast?round="+round+"&to="+strings.Join(others, ",")+"&dur=1s&every=20ms", nil)
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("status %d: %s", code, b)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("blast from %s: %v", nodes[i], err)
		}
	}
	reach := map[string][]string{}
	for _, n := range nodes {
		reach[n] = []string{}
	}
	for _, to := range nodes {
		var from []string
		if err := json.Unmarshal(nc.mustDo(t, ctx, http.MethodGet, to, "/seen?round="+round, nil), &from); err != nil {
			t.Fatalf("seen on %s: %v", to, err)
		}
		for _, f := range from {
			reach[f] = append(reach[f], to)
		}
	}
	for _, v := range reach {
		sort.Strings(v)
	}
	return reach
}

type rttResult struct {
	Sent     int       `json:"sent"`
	Received int       `json:"received"`
	RTTsMS   []float64 `json:"rtts_ms"`
}

func (r rttResult) median() float64 {
	if len(r.RTTsMS) == 0 {
		return 0
	}
	s := slices.Clone(r.RTTsMS)
	slices.Sort(s)
	return s[len(s)/2]
}

// rtt has `from` ping `to` count times over UDP.
func (nc *nodeClient) rtt(t *testing.T, ctx context.Context, from, to string, count int, every, wait time.Duration) rttResult {
	t.Helper()
	b := nc.mustDo(t, ctx, http.MethodGet, from, fmt.Sprintf("/rtt?to=%s&count=%d&every=%s&wait=%s", to, count, every, wait), nil)
	var r rttResult
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("rtt %s->%s: %v: %s", from, to, err, b)
	}
	return r
}

// fullMatrix is the reachability of a healthy cluster.
func fullMatrix(nodes []string) map[string][]string {
	m := map[string][]string{}
	for _, a := range nodes {
		m[a] = []string{}
		for _, b := range nodes {
			if a != b {
				m[a] = append(m[a], b)
			}
		}
	}
	return m
}
