package metanode

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// The guard's rules: a target is out of reach while a transfer to it is
// under way, and after one that did not end cleanly until both the settle
// time passed and it took entries appended after that transfer; a clean
// end leaves nothing; a new term forgets every target.
func TestTransferGuard(t *testing.T) {
	const settle = 5 * time.Second
	t0 := time.Unix(1000, 0)
	var tg transferGuard
	if why := tg.blocked(3, "n2", 0, settle, t0); why != "" {
		t.Fatalf("a fresh target: %s", why)
	}
	tg.begin(3, "n2")
	if why := tg.blocked(3, "n2", 100, settle, t0); !strings.Contains(why, "under way") {
		t.Fatalf("a target with a transfer under way: %q", why)
	}
	if why := tg.blocked(3, "n3", 0, settle, t0); why != "" {
		t.Fatalf("another target: %s", why)
	}
	tg.end(3, "n2", false, 40, t0)
	for _, c := range []struct {
		matched uint64
		at      time.Time
	}{{100, t0.Add(settle / 2)}, {40, t0.Add(2 * settle)}, {10, t0.Add(2 * settle)}} {
		if why := tg.blocked(3, "n2", c.matched, settle, c.at); !strings.Contains(why, "raft#696") {
			t.Fatalf("unsettled target, matched %d at +%s: %q", c.matched, c.at.Sub(t0), why)
		}
	}
	if why := tg.blocked(3, "n2", 41, settle, t0.Add(settle)); why != "" {
		t.Fatalf("a target settled (caught up past the transfer, settle time passed): %s", why)
	}
	tg.begin(3, "n2")
	tg.end(3, "n2", true, 50, t0.Add(settle))
	if why := tg.blocked(3, "n2", 0, settle, t0.Add(settle)); why != "" {
		t.Fatalf("after a clean end: %s", why)
	}
	tg.begin(3, "n3")
	tg.end(3, "n3", false, 60, t0)
	tg.end(2, "n2", false, 60, t0) // an older term's answer changes nothing
	if why := tg.blocked(3, "n2", 0, settle, t0); why != "" {
		t.Fatalf("an older term's end: %s", why)
	}
	if why := tg.blocked(4, "n3", 0, settle, t0); why != "" {
		t.Fatalf("a new term: %s", why)
	}
}

func TestCleanTransferEnd(t *testing.T) {
	for err, want := range map[error]bool{
		nil:                                  true,
		raft.ErrLeadershipTransferInProgress: true,
		raft.ErrNotLeader:                    true,
		errors.New("leadership transfer timeout"): false,
		errors.New("context deadline exceeded"):   false,
	} {
		if got := cleanTransferEnd(err); got != want {
			t.Errorf("cleanTransferEnd(%v) = %v, want %v", err, got, want)
		}
	}
}

// Every leadership transfer this node starts goes through
// transferLeadership: a raft transfer called anywhere else could wedge a
// group (hashicorp/raft#696).
func TestLeadershipTransfersGoThroughTheGuard(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || f == "transfer.go" {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for i, line := range strings.Split(string(src), "\n") {
			if strings.Contains(line, ".LeadershipTransfer(") || strings.Contains(line, ".LeadershipTransferToServer(") {
				t.Errorf("%s:%d: a raft leadership transfer outside transferLeadership: %s", f, i+1, strings.TrimSpace(line))
			}
		}
	}
	if checked < 10 {
		t.Fatalf("checked %d files: not the package's directory?", checked)
	}
}
