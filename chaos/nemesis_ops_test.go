package chaos

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify"
	"github.com/metamq/meta/verify/poll"
	"github.com/metamq/meta/verify/smallfs"
)

// noSpaceErr is the refusal a node sends while member's NOSPACE alarm is
// raised.
func noSpaceErr(member string) error {
	st, err := status.New(codes.ResourceExhausted, "NOSPACE alarm raised (member "+member+")").
		WithDetails(&errdetails.ErrorInfo{Domain: metapb.ErrorDomain, Reason: metapb.ReasonNoSpace})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

func hasNote(m *Nemesis, prefix string) bool {
	return slices.ContainsFunc(m.Notes(), func(n Note) bool { return strings.HasPrefix(n.Text, prefix) })
}

// A corrupt fault kills the follower, damages one of its files, starts
// it, and at Heal notes whether it noticed and replaces its copy: forced
// removal, then kill, wipe, re-add, recreate with --join, start.
func TestNemesisCorrupt(t *testing.T) {
	m, fc, fa := fakeNemesis(t)
	fc.dir = t.TempDir()
	wal := filepath.Join(fc.dir, "data", "n2", "db", "000009.log")
	if err := os.MkdirAll(filepath.Dir(wal), 0o755); err != nil {
		t.Fatal(err)
	}
	orig := bytes.Repeat([]byte("raft log record "), 256)
	if err := os.WriteFile(wal, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f := &verify.Fault{ID: 1, Kind: verify.FaultCorrupt, Nodes: []string{"n2"}, Params: map[string]string{"group": "data-0", "file": "sst"}, Pick: 77}
	if err := m.Inject(ctx, f); err != nil {
		t.Fatalf("Inject: %v", err)
	}
	if got, want := fc.Calls(), []string{"kill n2", "start n2"}; !slices.Equal(got, want) {
		t.Fatalf("Inject calls: got %q, want %q", got, want)
	}
	damaged, err := os.ReadFile(wal)
	if err != nil {
		t.Fatal(err)
	}
	diff := 0
	for i := range orig {
		if orig[i] != damaged[i] {
			diff++
		}
	}
	if diff != 32 {
		t.Fatalf("the write-ahead log (no table file to damage): %d bytes differ, want 32 (4 at each of 8 places)", diff)
	}
	// The node halts a replica when it reads the damage.
	if err := os.WriteFile(filepath.Join(fc.dir, "n2.log"), []byte("level=ERROR msg=\"... the group stops applying on this node\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fa.drained["n2"] = true
	if err := m.Heal(ctx, f); err != nil {
		t.Fatalf("Heal: %v", err)
	}
	if got, want := fc.Calls(), []string{"kill n2", "wipe n2", "recreate n2 --id n2 --join x", "start n2"}; !slices.Equal(got, want) {
		t.Errorf("Heal calls: got %q, want %q", got, want)
	}
	if !hasNote(m, NoteCorruptHalted) || !hasNote(m, NoteCorruptReplace) {
		t.Errorf("notes %v: want %q and %q", m.Notes(), NoteCorruptHalted, NoteCorruptReplace)
	}
}

// An upgrade restarts every node but one without --feature-level at
// Inject (the cluster version stays), the last at Heal, and notes the
// version raised.
func TestNemesisUpgrade(t *testing.T) {
	m, fc, fa := fakeNemesis(t)
	for _, n := range m.Nodes() {
		fc.args[n] = []string{"--id", n, "--feature-level", "1"}
	}
	fa.levels = func(node string) (uint32, uint32) {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		level := func(n string) uint32 {
			if slices.Contains(fc.args[n], "--feature-level") {
				return 1
			}
			return 2
		}
		v := uint32(2)
		for n := range fc.args {
			v = min(v, level(n))
		}
		return level(node), v
	}
	ctx := context.Background()
	f := &verify.Fault{ID: 1, Kind: verify.FaultUpgrade, Nodes: []string{"n2"}}
	if err := m.Inject(ctx, f); err != nil {
		t.Fatalf("Inject: %v", err)
	}
	want := []string{"stop n2", "recreate n2 --id n2", "start n2", "stop n1", "recreate n1 --id n1", "start n1"}
	if got := fc.Calls(); !slices.Equal(got, want) {
		t.Fatalf("Inject calls: got %q, want %q", got, want)
	}
	if err := m.Heal(ctx, f); err != nil {
		t.Fatalf("Heal: %v", err)
	}
	if got, want := fc.Calls(), []string{"stop n3", "recreate n3 --id n3", "start n3"}; !slices.Equal(got, want) {
		t.Fatalf("Heal calls: got %q, want %q", got, want)
	}
	if !hasNote(m, NoteVersionRaised+": from 1 to 2") {
		t.Errorf("notes %v: want %q from 1 to 2", m.Notes(), NoteVersionRaised)
	}
}

// A disk-full fault fills the node's own small filesystem to half its
// floor, returns once the alarm is listed and a write refused, and at
// Heal frees the space and disarms the alarm.
func TestNemesisDiskFull(t *testing.T) {
	for _, brim := range []bool{false, true} {
		t.Run(fmt.Sprintf("brim=%v", brim), func(t *testing.T) {
			m, fc, fa := fakeNemesis(t)
			m.cfg.MinFreeBytes = 16 << 20
			fc.dir = t.TempDir()
			dir := filepath.Join(fc.dir, "data", "n1")
			smallfs.MountAt(t, dir, 64<<20)
			// What the node stores, deleted while the disk is full.
			stored := filepath.Join(dir, "stored")
			if err := os.WriteFile(stored, make([]byte, 8<<20), 0o644); err != nil {
				t.Fatal(err)
			}
			fa.noSpace = "n1" // the node raises it once below its floor
			fa.levels = func(string) (uint32, uint32) { return 2, 2 }
			ctx := context.Background()
			f := &verify.Fault{ID: 1, Kind: verify.FaultDiskFull, Nodes: []string{"n1"}, Pick: 1}
			if brim {
				f.Pick = 3
			}
			if !m.Supports(verify.FaultDiskFull) {
				t.Fatal("Supports(disk-full) with MinFreeBytes: got false")
			}
			if err := m.Inject(ctx, f); err != nil {
				t.Fatalf("Inject: %v", err)
			}
			free := func() int64 {
				var st unix.Statfs_t
				if err := unix.Statfs(dir, &st); err != nil {
					t.Fatal(err)
				}
				return int64(st.Bavail) * st.Bsize
			}
			if got := free(); !brim && (got >= m.cfg.MinFreeBytes || got < m.cfg.MinFreeBytes/4) {
				t.Fatalf("free after Inject: %d, want about half the floor %d", got, m.cfg.MinFreeBytes)
			}
			if brim {
				if got := free(); got >= 1<<20 {
					t.Fatalf("free after Inject to the brim: %d, want under 1 MiB", got)
				}
				if err := os.Remove(stored); err != nil {
					t.Fatal(err)
				}
				poll.ForTrue(t, "the filler topped up after the node freed 8 MiB", 5*time.Second, func() bool { return free() < 1<<20 })
			}
			fc.Calls() // only Heal's
			if err := m.Heal(ctx, f); err != nil {
				t.Fatalf("Heal: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "disk-full.filler")); !os.IsNotExist(err) {
				t.Errorf("filler after Heal: %v, want it gone", err)
			}
			if !slices.Contains(fa.Calls(), "disarm") || !hasNote(m, NoteNoSpace) || !hasNote(m, NoteNoSpaceCleared) {
				t.Errorf("notes %v: want a disarm, %q and %q", m.Notes(), NoteNoSpace, NoteNoSpaceCleared)
			}
			var want []string
			if brim {
				want = []string{"stop n1", "start n1"} // the restart a stopped replica needs
			}
			if got := fc.Calls(); !slices.Equal(got, want) {
				t.Errorf("Heal's calls %q, want %q", got, want)
			}
		})
	}
}

// On a cluster whose version cannot raise the NOSPACE alarm (a rolling
// upgrade from the base level not finished), disk-full is skipped with a
// note rather than waiting for an alarm that cannot come.
func TestNemesisDiskFullSkippedBelowAlarmLevel(t *testing.T) {
	m, fc, fa := fakeNemesis(t)
	m.cfg.MinFreeBytes = 16 << 20
	fc.dir = t.TempDir()
	fa.levels = func(string) (uint32, uint32) { return 1, 1 }
	f := &verify.Fault{ID: 1, Kind: verify.FaultDiskFull, Nodes: []string{"n1"}}
	if err := m.Inject(context.Background(), f); err != nil {
		t.Fatalf("Inject: %v", err)
	}
	if err := m.Heal(context.Background(), f); err != nil {
		t.Fatalf("Heal: %v", err)
	}
	if !hasNote(m, "ops: disk-full skipped") || hasNote(m, NoteNoSpace) || slices.Contains(fa.Calls(), "disarm") {
		t.Errorf("notes %v: want the skip noted and nothing done", m.Notes())
	}
}
