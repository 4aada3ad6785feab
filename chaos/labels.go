package chaos

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Labels put on every Docker object a run creates (containers, networks,
// and volumes, should a later phase create any).
//
// LabelRun holds the run id; Terminate and Sweep(RunID) select on it.
// LabelOwner names the process that created the object as
// "<hostname>:<pid>:<start ticks>", where start ticks is field 22 of
// /proc/<pid>/stat (the process start time since boot, in clock ticks). A
// pid alone is reused by the kernel; pid plus start time identifies one
// process for the life of the machine, so the sweeper can tell the
// leftovers of a dead run from the live objects of a concurrent one.
// LabelNode holds the node name on containers.
const (
	LabelManaged = "meta.chaos"
	LabelRun     = "meta.chaos.run"
	LabelOwner   = "meta.chaos.owner"
	LabelNode    = "meta.chaos.node"
)

// NewRunID returns a fresh run id: UTC time to the second, then 6 random
// hex digits, e.g. "20260101-120000-a1b2c3". It is safe in container and
// network names and sorts by time.
func NewRunID() string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on Linux; a clock-derived suffix still
		// keeps ids distinct enough for names.
		return time.Now().UTC().Format("20060102-150405") + fmt.Sprintf("-%06x", time.Now().UnixNano()&0xffffff)
	}
	return time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// validRunID reports whether id may be used in Docker object names.
func validRunID(id string) bool {
	if id == "" || len(id) > 48 {
		return false
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

// ownerID identifies the current process; see LabelOwner.
func ownerID() (string, error) {
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("chaos: hostname: %w", err)
	}
	pid := os.Getpid()
	start, err := processStart(pid)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s:%d:%d", host, pid, start), nil
}

// ownerAlive reports whether the process named by an owner label still runs
// on this host. An owner on another host, or a label it cannot parse, counts
// as alive: the sweeper must never remove what it cannot prove abandoned.
func ownerAlive(owner string) bool {
	parts := strings.Split(owner, ":")
	if len(parts) != 3 {
		return true
	}
	host, err := os.Hostname()
	if err != nil || host != parts[0] {
		return true
	}
	pid, err1 := strconv.Atoi(parts[1])
	want, err2 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil {
		return true
	}
	got, err := processStart(pid)
	if err != nil {
		return false // no such process
	}
	return got == want
}

var errBadStat = errors.New("chaos: cannot parse /proc/<pid>/stat")

// processStart returns field 22 (starttime) of /proc/<pid>/stat.
func processStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("chaos: process %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces or
	// parentheses itself, so fields are counted after its last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errBadStat
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state); starttime is field 22.
	if len(fields) < 20 {
		return 0, errBadStat
	}
	v, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errBadStat, err)
	}
	return v, nil
}
