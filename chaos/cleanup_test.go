package chaos

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The cleanup tests run a child process (this test binary, re-executed with
// helperEnv set) that starts a cluster the way cmd/metachaos will, prints
// "READY <run id>" and waits. The parent then interrupts or kills it.
const (
	helperEnv      = "CHAOS_TEST_HELPER"
	helperImageEnv = "CHAOS_TEST_IMAGE"
	helperDirEnv   = "CHAOS_TEST_RUNDIR"
)

// helperMain is the child. Mode "interrupt" stops on SIGINT and cleans up,
// as cmd/ must: a context cancelled by the signal ends the work, and a
// deferred Terminate with a fresh context removes the cluster. Mode "panic"
// panics on SIGINT instead; the same deferred Terminate runs. Mode
// "abandon" ignores SIGINT and waits to be SIGKILLed, leaving everything
// behind for the sweeper.
func helperMain(mode string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := StartCluster(ctx, Options{
		Nodes:  2,
		Image:  os.Getenv(helperImageEnv),
		RunDir: os.Getenv(helperDirEnv),
		Port:   standinPort,
		Args:   standinArgs,
	})
	if err != nil {
		fmt.Println("ERROR", err)
		return 2
	}
	if mode == "interrupt" || mode == "panic" {
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if err := c.Terminate(cctx); err != nil {
				fmt.Println("ERROR", err)
			}
		}()
	}
	fmt.Println("READY", c.RunID())
	if mode == "panic" {
		<-ctx.Done()
		panic("helper: deliberate panic after SIGINT")
	}
	if mode == "abandon" {
		select {} // until SIGKILL
	}
	<-ctx.Done()
	return 0
}

// startHelper runs the child and returns it with its run id once it is up.
func startHelper(t *testing.T, mode string) (*exec.Cmd, string) {
	t.Helper()
	img := standinImage(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperImageEnv+"="+img.Tag, helperDirEnv+"="+t.TempDir())
	// The child's stderr (a deliberate panic's trace, testcontainers'
	// banner) is shown only if the test fails.
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("helper stderr:\n%s", stderr.String())
		}
	})
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	timeout := time.After(3 * time.Minute)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("helper exited before it was ready")
			}
			if id, found := strings.CutPrefix(l, "READY "); found {
				go func() {
					for range lines { // drain, so the child never blocks
					}
				}()
				return cmd, id
			}
			if strings.HasPrefix(l, "ERROR") {
				t.Fatalf("helper: %s", l)
			}
		case <-timeout:
			t.Fatalf("helper not ready after 3m")
		}
	}
}

func TestInterruptCleansUp(t *testing.T) {
	requireDocker(t)
	cmd, runID := startHelper(t, "interrupt")
	if left := leftovers(t, runID); len(left) != 3 {
		t.Fatalf("while running: got %v, want 2 containers and 1 network", left)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper after SIGINT: got %v, want exit 0", err)
	}
	if left := leftovers(t, runID); len(left) > 0 {
		t.Errorf("after SIGINT: got %v left, want nothing", left)
	}
}

func TestPanicCleansUp(t *testing.T) {
	requireDocker(t)
	cmd, runID := startHelper(t, "panic")
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	var exit *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("helper after panic: got %v, want exit status 2", err)
	}
	if left := leftovers(t, runID); len(left) > 0 {
		t.Errorf("after a panic: got %v left, want nothing", left)
	}
}

func TestSweepRemovesLeftoversOfDeadRuns(t *testing.T) {
	requireDocker(t)
	live := startStandins(t, 1) // a concurrent run the sweeper must spare
	cmd, runID := startHelper(t, "abandon")
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	var exit *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &exit) {
		t.Fatalf("helper after SIGKILL: got %v, want a kill exit", err)
	}
	left := leftovers(t, runID)
	if len(left) != 3 {
		t.Fatalf("after SIGKILL: got %v, want 2 containers and 1 network left behind", left)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Sweep(ctx, SweepOptions{Log: testLogger(t)})
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	wantCtrs := []string{"meta-" + runID + "-n1", "meta-" + runID + "-n2"}
	for _, w := range wantCtrs {
		if !slices.Contains(res.Containers, w) {
			t.Errorf("swept containers: got %v, want to include %s", res.Containers, w)
		}
	}
	if !slices.Contains(res.Networks, "meta-"+runID) {
		t.Errorf("swept networks: got %v, want to include meta-%s", res.Networks, runID)
	}
	if left := leftovers(t, runID); len(left) > 0 {
		t.Errorf("after Sweep: got %v left, want nothing", left)
	}
	if left := leftovers(t, live.RunID()); len(left) != 2 {
		t.Errorf("live run after Sweep: got %v, want its container and network untouched", left)
	}
	for _, c := range res.Containers {
		if strings.Contains(c, live.RunID()) {
			t.Errorf("Sweep removed %s of a live run", c)
		}
	}
}

func TestSweepByRunID(t *testing.T) {
	requireDocker(t)
	c := startStandins(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Sweep(ctx, SweepOptions{RunID: c.RunID()})
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if len(res.Containers) != 1 || len(res.Networks) != 1 {
		t.Errorf("Sweep(RunID): got %+v, want the run's 1 container and 1 network", res)
	}
	if left := leftovers(t, c.RunID()); len(left) > 0 {
		t.Errorf("after Sweep(RunID): got %v left, want nothing", left)
	}
	// Terminate after a sweep must still succeed (cleanup runs it).
}

func TestStartCancelledCleansUp(t *testing.T) {
	requireDocker(t)
	img := standinImage(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runID := NewRunID()
	// Cancel while the cluster is half up: containers and network exist.
	_, err := StartCluster(ctx, Options{
		Nodes: 3, Image: img.Tag, RunDir: t.TempDir(), RunID: runID, Port: standinPort, Args: standinArgs,
		Log: testLogger(t),
		Ready: func(context.Context, string) error {
			cancel()
			return errors.New("interrupted")
		},
	})
	if err == nil {
		t.Fatalf("StartCluster with a cancelled context: got nil error, want one")
	}
	if !errors.Is(err, context.Canceled) && !errors.Is(err, ErrNotReady) {
		t.Errorf("StartCluster: got %v, want context.Canceled or ErrNotReady", err)
	}
	if left := leftovers(t, runID); len(left) > 0 {
		t.Errorf("after a cancelled start: got %v left, want nothing", left)
	}
}

func TestSweepImages(t *testing.T) {
	requireDocker(t)
	keep := standinImage(t)
	// A binary no other test builds: the stand-in with bytes appended
	// (ignored by the loader, but a different content hash).
	b, err := os.ReadFile(standin(t))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "throwaway")
	if err := os.WriteFile(bin, append(b, []byte("throwaway "+NewRunID())...), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img, err := BuildImage(ctx, bin, ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img.Tag == keep.Tag {
		t.Fatalf("throwaway image has the stand-in's tag %s", img.Tag)
	}
	res, err := Sweep(ctx, SweepOptions{Images: true, KeepImages: []string{keep.Tag}, Log: testLogger(t)})
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if !slices.Contains(res.Images, img.ID) {
		t.Errorf("swept images: got %v, want to include %s", res.Images, img.ID)
	}
	if slices.Contains(res.Images, keep.ID) {
		t.Errorf("swept images: got %v, want %s kept", res.Images, keep.ID)
	}
	// The kept image is still there: building it again reuses it.
	again, err := BuildImage(ctx, standin(t), ImageOptions{})
	if err != nil || again.ID != keep.ID {
		t.Errorf("kept image after Sweep: got %+v, %v; want %+v", again, err, keep)
	}
}
