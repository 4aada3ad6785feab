package sm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"golang.org/x/sys/unix"

	"github.com/metamq/meta/verify/smallfs"
)

// fill writes a file that leaves about free bytes of dir's filesystem.
func fill(t *testing.T, dir string, free int64) string {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	avail := int64(st.Bavail) * st.Bsize
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for left := avail - free; left > 0; left -= int64(len(chunk)) {
		if _, err := f.Write(chunk[:min(int64(len(chunk)), left)]); err != nil {
			t.Fatalf("fill: %v", err)
		}
	}
	return path
}

// diskFullEnv names, in the child process of
// TestFullDiskHaltsTheGroupAndARestartResumes, the small filesystem to fill.
const diskFullEnv = "META_SM_DISKFULL_DIR"

// diskFullEntries is the raft log the test applies: puts of 128 KiB of
// incompressible bytes (RocksDB compresses what it flushes), the same in
// the child and the parent.
func diskFullEntries(t *testing.T, n int) []*raft.Log {
	rnd := rand.New(rand.NewPCG(1, 2))
	value := make([]byte, 128<<10)
	var log []*raft.Log
	for i := uint64(1); i <= uint64(n); i++ {
		for j := range value {
			value[j] = byte(rnd.Uint32())
		}
		log = append(log, entry(t, i, putOp(diskFullKey(i), string(value))))
	}
	return log
}

func diskFullKey(i uint64) string { return fmt.Sprintf("k%04d", i) }

// A full disk (a real ENOSPC from a small tmpfs) halts the group on this
// node instead of stopping the process: the entry that could not be
// stored answers no result (unknown here), the applied index stays below
// it, what was applied before stays readable, and once space is freed a
// restart applies the entries again from the log, losing nothing.
//
// The filling runs in a child process: Debian's librocksdb is built with
// assertions, and when the disk fills while RocksDB appends to its
// write-ahead log it can abort the process (WritableFileWriter's
// "sync_without_flush_called_" assertion) before meta sees an error. That
// is a crash, reported loudly here; the parent then checks what matters
// either way: after space is freed and the node restarts, every entry
// acknowledged before the failure is still there.
func TestFullDiskHaltsTheGroupAndARestartResumes(t *testing.T) {
	const entries = 400 // 50 MiB, past the 32 MiB filesystem
	if dir := os.Getenv(diskFullEnv); dir != "" {
		fillAndApply(t, dir, diskFullEntries(t, entries))
		return
	}
	dir := smallfs.Mount(t, 32<<20)
	cmd := exec.Command(os.Args[0], "-test.run=^TestFullDiskHaltsTheGroupAndARestartResumes$", "-test.v")
	cmd.Env = append(os.Environ(), diskFullEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	acked, halted := uint64(0), false
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "ACKED "); ok {
			acked, _ = strconv.ParseUint(v, 10, 64)
		}
		halted = halted || strings.HasPrefix(line, "HALTED")
	}
	switch {
	case err == nil && halted:
		t.Logf("the full disk halted the group after %d acknowledged entries; the process stayed up", acked)
	case strings.Contains(string(out), "AssertFalseAndGetStatusForPrevError"):
		t.Logf("KNOWN LIMITATION: librocksdb's assertion aborted the process when the disk filled (after %d acknowledged entries); checking that none is lost", acked)
	default:
		t.Fatalf("child: %v (halted %v)\n%s", err, halted, out)
	}
	if acked == 0 {
		t.Fatalf("no entry was acknowledged before the disk filled:\n%s", out)
	}

	// Space freed, the node restarted: nothing acknowledged is lost, and
	// the log is applied again.
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, group: KindData.String() + "-0", kind: KindData}
	e.open()
	t.Cleanup(func() { e.close() })
	if e.m.Halted() != nil {
		t.Fatalf("halted after a restart with space: %v", e.m.Halted())
	}
	if got := e.m.AppliedIndex(); got < acked {
		t.Fatalf("applied index %d after restart, below the %d entries acknowledged: lost", got, acked)
	}
	log := diskFullEntries(t, int(acked)+1)
	e.m.ApplyBatch(log[e.m.AppliedIndex():])
	if e.m.Halted() != nil || e.m.AppliedIndex() != uint64(len(log)) {
		t.Fatalf("after replay: applied %d of %d, halted %v", e.m.AppliedIndex(), len(log), e.m.Halted())
	}
	for i := uint64(1); i <= uint64(len(log)); i++ {
		if kv, err := e.m.Get([]byte(diskFullKey(i))); err != nil || kv == nil || len(kv.Value) != 128<<10 {
			t.Fatalf("key %d after the replay: %v, %v", i, kv, err)
		}
	}
}

// fillAndApply (in the child process) fills dir to 3 MiB free and applies
// log until the group halts, printing each acknowledged index; it checks
// the halt.
func fillAndApply(t *testing.T, dir string, log []*raft.Log) {
	e := &env{t: t, dir: dir, group: KindData.String() + "-0", kind: KindData}
	e.open()
	defer e.close()
	fill(t, dir, 3<<20)
	n := 0
	for _, l := range log {
		n++
		if br := e.m.Apply(l).(*BatchResult); len(br.Results) == 0 {
			break
		}
		fmt.Printf("ACKED %d\n", l.Index)
	}
	halted := e.m.Halted()
	if !errors.Is(halted, ErrStorage) || !errors.Is(halted, ErrHalted) {
		t.Fatalf("after %d puts of 128 KiB on 3 MiB free: Halted() = %v, want a storage halt", n, halted)
	}
	applied := e.m.AppliedIndex()
	var h *HaltError
	if !errors.As(halted, &h) || h.Index != applied+1 || uint64(n) != applied+1 {
		t.Fatalf("halted at %v, applied index %d after %d entries: the halt must be at the first entry not stored", halted, applied, n)
	}
	if br := e.m.Apply(log[n]).(*BatchResult); len(br.Results) != 0 {
		t.Fatalf("an entry after the halt answered %v", br.Results)
	}
	for i := uint64(1); i <= applied; i++ {
		if kv, err := e.m.Get([]byte(diskFullKey(i))); err != nil || kv == nil {
			t.Fatalf("key %d, applied before the disk filled: %v, %v", i, kv, err)
		}
	}
	fmt.Println("HALTED", halted)
}
