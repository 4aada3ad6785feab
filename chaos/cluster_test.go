package chaos

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBuildImageReusesTag(t *testing.T) {
	requireDocker(t)
	first := standinImage(t)
	if !strings.HasPrefix(first.Tag, DefaultImageRepo+":") || !strings.HasPrefix(first.ID, "sha256:") {
		t.Fatalf("BuildImage: got %+v, want tag %s:<hash> and a sha256 id", first, DefaultImageRepo)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	again, err := BuildImage(ctx, standin(t), ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Errorf("second BuildImage: got %+v, want the same image %+v", again, first)
	}
}

func TestClusterLifecycle(t *testing.T) {
	c := startStandins(t, 3)
	nc := newNodeClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	t.Run("endpoints and addresses", func(t *testing.T) {
		for i, n := range c.Nodes() {
			if got := string(nc.mustDo(t, ctx, http.MethodGet, n, "/health", nil)); got != "ok "+n+"\n" {
				t.Errorf("health of %s: got %q, want %q", n, got, "ok "+n+"\n")
			}
			ip, err := c.IP(n)
			if err != nil {
				t.Fatal(err)
			}
			if want := byte(11 + i); ip.As4()[3] != want {
				t.Errorf("IP(%s) = %s: want last byte %d", n, ip, want)
			}
			if pa, _ := c.PeerAddr(n); pa != n+":7000" {
				t.Errorf("PeerAddr(%s): got %s, want %s:7000", n, pa, n)
			}
		}
		if _, err := c.Endpoint("n9"); err == nil {
			t.Errorf("Endpoint(n9): got nil error, want ErrUnknownNode")
		}
	})

	t.Run("kill -9 and restart keep data, endpoint and logs", func(t *testing.T) {
		before, _ := c.Endpoint("n1")
		nc.mustDo(t, ctx, http.MethodPut, "n1", "/data/k", strings.NewReader("v1"))
		if err := c.Kill(ctx, "n1"); err != nil {
			t.Fatal(err)
		}
		if st, err := c.State(ctx, "n1"); err != nil || st.Running {
			t.Fatalf("after Kill: got state %+v, %v; want not running", st, err)
		}
		if err := c.Kill(ctx, "n1"); err != nil {
			t.Errorf("Kill of a dead node: got %v, want nil", err)
		}
		if err := c.Start(ctx, "n1"); err != nil {
			t.Fatal(err)
		}
		if after, _ := c.Endpoint("n1"); after != before {
			t.Errorf("endpoint after restart: got %s, want %s", after, before)
		}
		if got := string(nc.mustDo(t, ctx, http.MethodGet, "n1", "/data/k", nil)); got != "v1" {
			t.Errorf("data after kill -9 and restart: got %q, want %q", got, "v1")
		}
		dir, _ := c.DataDir("n1")
		if b, err := os.ReadFile(filepath.Join(dir, "k")); err != nil || string(b) != "v1" {
			t.Errorf("host copy of the data: got %q, %v; want %q", b, err, "v1")
		}
		waitLog(t, c, "n1", "n1's log to hold both starts", func(log string) bool {
			return strings.Count(log, "standin n1 started") == 2 && strings.Contains(log, "n1 SIGKILL")
		})
	})

	t.Run("stop sends SIGTERM", func(t *testing.T) {
		if err := c.Stop(ctx, "n2"); err != nil {
			t.Fatal(err)
		}
		waitLog(t, c, "n2", "n2's log to show a graceful stop", func(log string) bool {
			return strings.Contains(log, "standin n2 stopping")
		})
		if err := c.Start(ctx, "n2"); err != nil {
			t.Fatal(err)
		}
		nc.mustDo(t, ctx, http.MethodGet, "n2", "/health", nil)
	})

	t.Run("pause freezes, unpause resumes", func(t *testing.T) {
		if r := nc.rtt(t, ctx, "n1", "n3", 5, 10*time.Millisecond, time.Second); r.Received != 5 {
			t.Fatalf("before pause: got %d of 5 pongs, want 5", r.Received)
		}
		if err := c.Pause(ctx, "n3"); err != nil {
			t.Fatal(err)
		}
		if st, err := c.State(ctx, "n3"); err != nil || !st.Paused {
			t.Errorf("after Pause: got state %+v, %v; want paused", st, err)
		}
		if r := nc.rtt(t, ctx, "n1", "n3", 5, 10*time.Millisecond, time.Second); r.Received != 0 {
			t.Errorf("while paused: got %d of 5 pongs, want 0", r.Received)
		}
		if err := c.Unpause(ctx, "n3"); err != nil {
			t.Fatal(err)
		}
		if r := nc.rtt(t, ctx, "n1", "n3", 5, 10*time.Millisecond, time.Second); r.Received != 5 {
			t.Errorf("after unpause: got %d of 5 pongs, want 5", r.Received)
		}
		nc.mustDo(t, ctx, http.MethodGet, "n3", "/health", nil)
	})

	t.Run("kill a paused node", func(t *testing.T) {
		if err := c.Pause(ctx, "n3"); err != nil {
			t.Fatal(err)
		}
		restart(t, ctx, c, "n3")
		nc.mustDo(t, ctx, http.MethodGet, "n3", "/health", nil)
	})

	t.Run("terminate is idempotent and final", func(t *testing.T) {
		tctx, tcancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer tcancel()
		if err := c.Terminate(tctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Terminate(tctx); err != nil {
			t.Errorf("second Terminate: got %v, want nil", err)
		}
		if left := leftovers(t, c.RunID()); len(left) > 0 {
			t.Errorf("after Terminate: got %v left, want nothing", left)
		}
		if err := c.Kill(tctx, "n1"); err == nil {
			t.Errorf("Kill after Terminate: got nil, want ErrTerminated")
		}
		logPath, _ := c.LogPath("n1")
		if logPath != "" {
			t.Errorf("LogPath after Terminate: got %q, want an error", logPath)
		}
	})
}

// TestRocksDBImage runs a binary linked against librocksdb (what metanode
// needs) from a scratch image, through kill -9 and restart.
func TestRocksDBImage(t *testing.T) {
	requireDocker(t)
	bin, err := buildStandin("standin-rocks", "rocks")
	if err != nil {
		t.Fatal(err)
	}
	libs, err := sharedLibraries(context.Background(), bin)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(libs, func(l string) bool { return strings.Contains(l, "librocksdb") }) {
		t.Fatalf("ldd of the rocks stand-in: got %v, want librocksdb among them", libs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	img, err := BuildImage(ctx, bin, ImageOptions{Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	c := startOne(t, ctx, Options{Nodes: 1, Image: img.Tag})
	restart(t, ctx, c, "n1")
	waitLog(t, c, "n1", "the second start to reopen RocksDB after kill -9", func(log string) bool {
		return strings.Contains(log, "standin n1 rocksdb starts=2")
	})
}

// Nodes start from Options.InitialImage and spares from Image; Recreate
// moves a node to Image: a rolling upgrade from an older release's binary
// (the stand-in built with RocksDB stands for the older one here).
func TestInitialImageUntilRecreate(t *testing.T) {
	requireDocker(t)
	bin, err := buildStandin("standin-rocks", "rocks")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	older, err := BuildImage(ctx, bin, ImageOptions{Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	c := startOne(t, ctx, Options{Nodes: 1, Spares: 1, Image: standinImage(t).Tag, InitialImage: older.Tag})
	waitLog(t, c, "n1", "n1 to start on the initial image (RocksDB opened)", func(log string) bool {
		return strings.Contains(log, "standin n1 rocksdb starts=1")
	})
	if err := c.Start(ctx, "n2"); err != nil {
		t.Fatal(err)
	}
	waitLog(t, c, "n2", "the spare to start on the image, without RocksDB", func(log string) bool {
		return strings.Contains(log, "standin n2 started") && !strings.Contains(log, "rocksdb")
	})
	args, err := c.Args("n1")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Recreate(ctx, "n1", args); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	waitLog(t, c, "n1", "n1 to start again on the image after Recreate, without RocksDB", func(log string) bool {
		return strings.Count(log, "standin n1 started") == 2 && strings.Count(log, "rocksdb starts=") == 1
	})
}

// startOne starts a stand-in cluster of o (its run folder, port, flags
// and log filled in) and terminates it at cleanup.
func startOne(t *testing.T, ctx context.Context, o Options) *Cluster {
	t.Helper()
	o.RunDir, o.Port, o.Args, o.Log = t.TempDir(), standinPort, standinArgs, testLogger(t)
	c, err := StartCluster(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Terminate(ctx); err != nil {
			t.Errorf("Terminate: %v", err)
		}
	})
	return c
}
