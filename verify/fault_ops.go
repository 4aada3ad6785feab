package verify

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/metamq/meta/rpc/metapb"
)

// Operations faults (issue 14): what a person running meta meets besides
// crashes and networks. They live apart from fault.go's kinds so that
// other kinds can be added there without touching these.
const (
	// FaultDiskFull fills Nodes[0]'s data directory (a filler file on its
	// filesystem) until the node's free space is below its floor
	// (--min-free-bytes) at Inject: the node raises the NOSPACE alarm
	// through raft and every leader refuses writes that take space with
	// the definite NOSPACE error, while the full node stays up (no group
	// halted, no crash loop) and no acknowledged write is lost. Heal
	// removes the filler and disarms the alarm (metactl alarm disarm),
	// and waits until a write goes through again. One such fault in three
	// (FillsToTheBrim) fills the filesystem whole instead: RocksDB meets
	// the full disk (ENOSPC) on what it still writes (the alarm's own
	// entry, flushes, deletes), the node must stay up (its replicas may
	// stop) with the alarm raised all the same, and Heal restarts it
	// once the space is freed, before the disarm (a replica stopped on a
	// full disk resumes only after a restart). Until Heal the filler is
	// topped up (TopUp) whenever the node frees space, so the disk stays
	// full.
	FaultDiskFull FaultKind = "disk-full"
	// FaultCorrupt stops Nodes[0] (a follower of Params["group"]), flips
	// bytes in one of its files (Params["file"]: "sst" a RocksDB table
	// file, "wal" a RocksDB write-ahead log holding its raft log and
	// state, "snapshot" a raft snapshot's state file; another kind when
	// the node has none of that one) and starts it again at Inject. The
	// node must refuse to start with a clear error, or halt or fence the
	// damaged replica when it reads the damage (a storage failure or a
	// CORRUPT alarm of the replica hash check); it must never serve wrong
	// data. Heal replaces its copy from the good replicas as the README
	// runbook does: member remove, wipe, member add, start with --join.
	FaultCorrupt FaultKind = "corrupt"
	// FaultUpgrade is a rolling upgrade under load, on a cluster whose
	// members run an older feature level (its cluster version is the
	// older one): at Inject every node but one, Nodes[0] first, is
	// restarted one at a time at the newer level (each waited for until
	// every group has a leader again); the cluster version must stay at
	// the older level while a member runs it. Heal restarts the last node
	// at the newer level and waits until every node sees the cluster
	// version raised to it. The cluster version is never lowered, so on
	// a cluster already at the newer level (a second upgrade) the fault
	// is a rolling restart at that level.
	FaultUpgrade FaultKind = "upgrade"
)

// OpsFaultKinds are the operations faults, in a fixed order (the tail of
// AllFaultKinds).
var OpsFaultKinds = []FaultKind{FaultDiskFull, FaultCorrupt, FaultUpgrade}

// CorruptFiles are the kinds of file a corrupt fault damages.
var CorruptFiles = []string{"sst", "wal", "snapshot"}

// drawOpsFault draws a target and parameters for an operations fault; ok
// is false for any other kind.
func drawOpsFault(rng *rand.Rand, kind FaultKind, group string) (t Target, params map[string]string, ok bool) {
	switch kind {
	case FaultDiskFull:
		return TargetRandom, nil, true
	case FaultCorrupt:
		return FollowerOf(group), map[string]string{"group": group, "file": CorruptFiles[rng.IntN(len(CorruptFiles))]}, true
	case FaultUpgrade:
		return TargetRandom, nil, true
	}
	return "", nil, false
}

// AlarmAdmin is the part of the public client the disk-full fault needs.
type AlarmAdmin interface {
	Put(ctx context.Context, req *metapb.PutRequest) (*metapb.PutResponse, error)
	Alarms(ctx context.Context) (*metapb.AlarmsResponse, error)
	DisarmAlarm(ctx context.Context, alarm, member string) (*metapb.AlarmsResponse, error)
}

// diskFullProbeKey is the key the disk-full fault's probe writes: outside
// every workload's keys, so that no checker judges it.
const diskFullProbeKey = "nemesis/disk-full-probe"

// NoSpace reports whether err is the definite NOSPACE refusal of a write.
func NoSpace(err error) bool {
	_, reason := errorReason(err)
	return reason == metapb.ReasonNoSpace
}

// AwaitNoSpace waits until the cluster lists a NOSPACE alarm of member
// and refuses a write with the definite NOSPACE error (a probe put of a
// key no workload uses).
func AwaitNoSpace(ctx context.Context, adm AlarmAdmin, member string, opTimeout time.Duration) error {
	return pollBounded(ctx, opTimeout, func(cctx context.Context) error {
		resp, err := adm.Alarms(cctx)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(resp.Alarms, func(a *metapb.Alarm) bool { return a.Member == member && a.Alarm == "NOSPACE" }) {
			return fmt.Errorf("verify: disk-full: no NOSPACE alarm of %s listed yet (alarms %v)", member, resp.Alarms)
		}
		_, err = adm.Put(cctx, &metapb.PutRequest{Key: []byte(diskFullProbeKey), Value: []byte(member)})
		if !NoSpace(err) {
			return fmt.Errorf("verify: disk-full: a write while %s's alarm is raised: got %v, want the NOSPACE refusal", member, err)
		}
		return nil
	})
}

// ClearNoSpace disarms every NOSPACE alarm (the admin's step once space is
// freed) until the cluster lists none and a write goes through again.
func ClearNoSpace(ctx context.Context, adm AlarmAdmin, opTimeout time.Duration) error {
	return pollBounded(ctx, opTimeout, func(cctx context.Context) error {
		if _, err := adm.DisarmAlarm(cctx, "", ""); err != nil {
			return fmt.Errorf("verify: disarm NOSPACE: %w", err)
		}
		if _, err := adm.Put(cctx, &metapb.PutRequest{Key: []byte(diskFullProbeKey), Value: []byte("cleared")}); err != nil {
			return fmt.Errorf("verify: a write after the NOSPACE alarm was disarmed: %w", err)
		}
		return nil
	})
}

// FillsToTheBrim says whether disk-full fault f fills its node's
// filesystem whole (one fault in three, by its Pick) rather than to half
// its floor.
func FillsToTheBrim(f *Fault) bool { return f.Kind == FaultDiskFull && f.Pick%3 == 0 }

// maxFiller bounds a disk-full filler: a data directory with more free
// space than this is not on a small filesystem of its own, and filling
// it would fill the machine's disk.
const maxFiller = 1 << 30

// FillDir allocates a filler file in dir (a node's data directory, on a
// small filesystem of its own) that leaves half of floor (the node's
// --min-free-bytes) free: below its floor, the node raises NOSPACE, and
// RocksDB keeps room to write; brim leaves nothing free. It returns the
// filler's path (remove it to free the space) and how much it took. A
// directory with more than 1 GiB above that, or no floor, is refused
// with ErrUnsupported.
func FillDir(dir string, floor int64, brim bool) (path string, filled int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "", 0, fmt.Errorf("verify: disk-full: statfs %s: %w", dir, err)
	}
	free := int64(st.Bavail) * st.Bsize
	fill := free - floor/2
	if brim {
		fill = free
	}
	if floor <= 0 || fill > maxFiller {
		return "", 0, fmt.Errorf("%w: disk-full needs the data directory %s on a small filesystem of its own and a free-space floor (floor %d, %d bytes free)",
			ErrUnsupported, dir, floor, free)
	}
	path = filepath.Join(dir, "disk-full.filler")
	if fill <= 0 {
		return path, 0, nil
	}
	fh, err := os.Create(path)
	if err != nil {
		return path, 0, fmt.Errorf("verify: disk-full: %w", err)
	}
	if brim {
		fill, err = allocate(fh, 0, fill)
	} else {
		err = unix.Fallocate(int(fh.Fd()), 0, 0, fill)
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return path, 0, fmt.Errorf("verify: disk-full: fill %d bytes of %s: %w", fill, dir, err)
	}
	return path, fill, nil
}

// allocate extends fh by up to n bytes from offset at, a MiB less each
// time the filesystem has not that much (the node wrote since it was
// measured; a failed fallocate allocates nothing), and returns how much
// it took.
func allocate(fh *os.File, at, n int64) (int64, error) {
	err := unix.Fallocate(int(fh.Fd()), 0, at, n)
	for errors.Is(err, unix.ENOSPC) && n > 1<<20 {
		n -= 1 << 20
		err = unix.Fallocate(int(fh.Fd()), 0, at, n)
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

// TopUp extends the filler at path (FillDir's, to the brim) by whatever
// its filesystem has free again: the node deletes files (compactions,
// old logs) while its disk is full, and a disk kept full is what a
// filesystem another process fills looks like. The disk-full fault calls
// it every TopUpEvery until Heal.
func TopUp(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(path), &st); err != nil {
		return 0, fmt.Errorf("verify: disk-full: statfs: %w", err)
	}
	free := int64(st.Bavail) * st.Bsize
	if free <= 0 {
		return 0, nil
	}
	fh, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("verify: disk-full: %w", err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return 0, fmt.Errorf("verify: disk-full: %w", err)
	}
	n, err := allocate(fh, fi.Size(), free)
	if err != nil && !errors.Is(err, unix.ENOSPC) {
		return 0, fmt.Errorf("verify: disk-full: top up %s: %w", path, err)
	}
	return n, nil
}

// TopUpEvery is how often a disk-full fault to the brim tops its filler
// up.
const TopUpEvery = 100 * time.Millisecond

// DamageFile flips bytes at eight places spread over one file of the
// stopped node's data directory dir, of kind want ("sst": a RocksDB table
// file under db/; "wal": a RocksDB write-ahead log under db/; "snapshot":
// a file of a stored raft snapshot under snapshots/, its metadata
// excepted), or of the next kind in CorruptFiles' order when dir
// holds no non-empty file of that kind. pick chooses among the files of
// the kind, in sorted order (a log: the newest). It returns the kind and
// path it damaged.
func DamageFile(dir, want string, pick uint64) (kind, path string, err error) {
	files := map[string][]string{}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil || info.Size() < 64 {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case strings.HasPrefix(rel, "db"+string(filepath.Separator)) && strings.HasSuffix(rel, ".sst"):
			files["sst"] = append(files["sst"], p)
		case strings.HasPrefix(rel, "db"+string(filepath.Separator)) && strings.HasSuffix(rel, ".log"):
			files["wal"] = append(files["wal"], p)
		case strings.HasPrefix(rel, "snapshots"+string(filepath.Separator)) && !strings.HasSuffix(rel, ".json"):
			files["snapshot"] = append(files["snapshot"], p)
		}
		return nil
	})
	if err != nil {
		return "", "", fmt.Errorf("verify: corrupt: %w", err)
	}
	start := max(slices.Index(CorruptFiles, want), 0)
	for i := range CorruptFiles {
		k := CorruptFiles[(start+i)%len(CorruptFiles)]
		if ps := files[k]; len(ps) > 0 {
			slices.Sort(ps)
			var p string
			if k != "wal" {
				p = ps[pick%uint64(len(ps))]
			} else {
				// The newest log: RocksDB replays it at the next start.
				// An older one may be obsolete (its writes flushed, the
				// file not yet deleted when the node stopped), and damage
				// nothing reads again tests nothing.
				p = newestWAL(ps)
			}
			return k, p, flipBytes(p, pick)
		}
	}
	return "", "", fmt.Errorf("verify: corrupt: no file to damage in %s", dir)
}

// newestWAL is the write-ahead log with the highest file number among
// paths (RocksDB numbers its files; the names are NNNNNN.log).
func newestWAL(paths []string) string {
	best, num := paths[0], uint64(0)
	for _, p := range paths {
		n, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(p), ".log"), 10, 64)
		if err == nil && n >= num {
			best, num = p, n
		}
	}
	return best
}

// flipBytes inverts 4 bytes at each of eight offsets spread over the file
// (the first at a seeded place in its first eighth), so that whatever a
// reader reads, a header, a block, a record or a footer, it meets damage.
func flipBytes(path string, pick uint64) error {
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("verify: corrupt: %w", err)
	}
	defer fh.Close()
	info, err := fh.Stat()
	if err != nil {
		return err
	}
	size := info.Size()
	step := size / 8
	buf := make([]byte, 4)
	for i := range int64(8) {
		off := i*step + int64(pick%uint64(max(step-4, 1)))
		off = min(off, size-4)
		if _, err := fh.ReadAt(buf, off); err != nil {
			return fmt.Errorf("verify: corrupt: read %s at %d: %w", path, off, err)
		}
		for j := range buf {
			buf[j] ^= 0xff
		}
		if _, err := fh.WriteAt(buf, off); err != nil {
			return fmt.Errorf("verify: corrupt: write %s at %d: %w", path, off, err)
		}
	}
	return fh.Sync()
}
