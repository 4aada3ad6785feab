package metanodetest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/verify"
	"github.com/metamq/meta/verify/poll"
)

// The operations faults (verify/fault_ops.go) on an in-process cluster:
//
//   - disk-full: a filler file in Nodes[0]'s data directory takes its
//     filesystem's free space to half the node's floor (MinFreeBytes); the
//     directory must be a small filesystem of its own (a tmpfs per node,
//     smallfs.MountAt), or Inject refuses with ErrUnsupported rather than
//     fill the machine's disk. Inject returns once the cluster lists the
//     node's NOSPACE alarm and refuses a probe write with NOSPACE; Heal
//     checks the node still runs with no replica halted, removes the
//     filler and disarms the alarm until a write goes through. One fault
//     in three (verify.FillsToTheBrim) fills the filesystem whole:
//     RocksDB meets ENOSPC, a replica halted on it is allowed (counted in
//     ENOSPCHalted), and Heal restarts the node before the disarm.
//   - corrupt: Nodes[0] is crashed, bytes are flipped at eight places
//     spread over one of its files (Params["file"]; another kind when it
//     has none of that one), and it is started again. A start that fails
//     counts as detected; a node that starts is watched until Heal for a
//     replica halted or fenced. Heal replaces its copy (member remove,
//     wipe, member add, join) as the README's runbook does.
//   - upgrade: nodes are restarted in order (Stop, SetFeatureLevel,
//     Restart) at sm.FeatureLevel on a cluster started at a lower level
//     (Options.Configure's FeatureLevel; such a node applies only what a
//     release of that level knows, sm.Config.Level); on a cluster already
//     at it, a rolling restart. While an older member still runs, each
//     node restarted is handed every group's leadership and the mixed
//     cluster runs for upgradeSoak. A replica halted on any running node
//     before a node is restarted fails the fault at Heal
//     (ErrBrokenPromise): a rolling upgrade must never bring an older
//     member an entry it cannot apply.
//
// A corrupt fault's node that started on its damaged write-ahead log (the
// newest, replayed at every start) and halted nothing by Heal fails the
// fault too (ErrBrokenPromise), unless the damage reads as the torn tail
// a crash leaves, which recovery drops without an error (walRecoveryError:
// a control run without a planted bug saw a node start so).

// ErrBrokenPromise is wrapped by an operations fault's error when the
// cluster broke a promise the fault itself checks (a damaged write-ahead
// log the node started on unnoticed, a replica halted during a rolling
// upgrade), as opposed to a fault that could not be carried out: the
// planted bugs' self-test counts the first as a catch.
var ErrBrokenPromise = errors.New("metanodetest: the cluster broke a promise")

// OpsStats count what the operations faults did, so that a test can tell
// a fault that happened (a refusal seen, damage detected, a version
// raised) from one that was only scheduled.
type OpsStats struct {
	// NoSpaceRefusals counts disk-full faults during which the cluster
	// listed the full node's NOSPACE alarm and refused a write with
	// NOSPACE.
	NoSpaceRefusals int
	// DiskFullCleared counts disk-full heals after which writes went
	// through again, the full node still running with no replica halted.
	DiskFullCleared int
	// ENOSPCHalted counts disk-full faults to the brim during which a
	// replica of the full node stopped on the full disk (RocksDB met
	// ENOSPC).
	ENOSPCHalted int
	// CorruptFiles counts damaged files by kind (sst, wal, snapshot).
	CorruptFiles map[string]int
	// CorruptRefused counts damaged nodes that refused to start.
	CorruptRefused int
	// CorruptHalted counts damaged nodes that started and then halted
	// or fenced a replica before Heal.
	CorruptHalted int
	// CorruptUnseen counts damaged nodes in which nothing noticed the
	// damage before Heal (bytes nobody read; Heal replaces the copy all
	// the same).
	CorruptUnseen int
	// CorruptReplaced counts damaged nodes whose copy Heal replaced.
	CorruptReplaced int
	// Upgraded counts nodes restarted at the newer feature level.
	Upgraded int
	// VersionRaised counts upgrade faults after which every node saw the
	// cluster version raised to the newer level.
	VersionRaised int
}

// opsState is the operations fault in progress.
type opsState struct {
	OpsStats
	// filler is the disk-full fault's filler file, or "".
	filler string
	// fullNode is the node the filler fills; brim, whether it fills its
	// filesystem whole.
	fullNode string
	brim     bool
	// corrupt is the node a corrupt fault damaged, until Heal replaced it;
	// corruptWAL is what the recovery of the damaged write-ahead log
	// must fail on (walRecoveryError; nil for another kind of file), and
	// corruptStarted whether the node started on it.
	corrupt        string
	corruptWAL     error
	corruptStarted bool
	// upgradeLeft are the nodes an upgrade fault has still to restart;
	// upgradeFrom is the cluster version before it.
	upgradeLeft []string
	upgradeFrom uint32
	// upgradeHalts are the replicas seen halted during an upgrade fault
	// (ErrBrokenPromise), reported by its Heal.
	upgradeHalts error
}

// healAllOps ends whatever operations fault is left.
func (n *Nemesis) healAllOps(ctx context.Context) error {
	n.mu.Lock()
	st := n.ops
	n.mu.Unlock()
	var errs []error
	if st.filler != "" {
		errs = append(errs, n.healDiskFull(ctx))
	}
	if st.corrupt != "" {
		errs = append(errs, n.healCorrupt(ctx))
	}
	if len(st.upgradeLeft) > 0 {
		errs = append(errs, n.healUpgrade(ctx))
	}
	return errors.Join(errs...)
}

// ---- disk-full ----

func (n *Nemesis) injectDiskFull(ctx context.Context, f *verify.Fault) error {
	id := f.Nodes[0]
	if n.c.Running(id) == nil {
		return fmt.Errorf("%w: %s", ErrNodeDown, id)
	}
	brim := verify.FillsToTheBrim(f)
	n.mu.Lock()
	n.ops.fullNode, n.ops.brim = id, brim
	n.mu.Unlock()
	path, fill, err := verify.FillDir(n.c.Get(id).Dir, n.minFree, brim)
	n.mu.Lock()
	n.ops.filler = path
	n.mu.Unlock()
	if err != nil {
		return fmt.Errorf("metanodetest: %s: %w", id, err)
	}
	if brim {
		if err := n.startLoop(func(ctx context.Context) { topUp(ctx, path) }); err != nil {
			return err
		}
	}
	if err := verify.AwaitNoSpace(ctx, n.cl, id, n.timeout); err != nil {
		return fmt.Errorf("metanodetest: %w", err)
	}
	n.mu.Lock()
	n.ops.NoSpaceRefusals++
	n.mu.Unlock()
	n.log.Info("nemesis: disk full, writes refused with NOSPACE", "fault", f.ID, "node", id, "filled", fill, "to_the_brim", brim)
	return nil
}

// healDiskFull checks the full node stayed up with no replica halted,
// frees the space and disarms the alarm until writes go through.
func (n *Nemesis) healDiskFull(ctx context.Context) error {
	n.mu.Lock()
	path, id, brim := n.ops.filler, n.ops.fullNode, n.ops.brim
	n.mu.Unlock()
	if brim {
		n.stopLoop() // the top-up
	}
	var errs []error
	node := n.c.Running(id)
	if node == nil {
		errs = append(errs, fmt.Errorf("metanodetest: disk-full: %s stopped while its disk was full, want it up refusing writes", id))
	} else if halted := node.Halted(); brim && len(halted) > 0 {
		n.mu.Lock()
		n.ops.ENOSPCHalted++
		n.mu.Unlock()
	} else {
		for g, err := range halted {
			errs = append(errs, fmt.Errorf("metanodetest: disk-full: %s's replica of %s halted while its disk was full (the floor must keep the disk from filling): %w", id, g, err))
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return errors.Join(append(errs, err)...)
	}
	if brim && node != nil {
		// A replica stopped on the full disk resumes only after a
		// restart; the alarm's storage failure goes with it.
		n.c.Stop(id)
		if err := n.c.Restart(id); err != nil {
			return errors.Join(append(errs, fmt.Errorf("metanodetest: disk-full: restart %s after freeing its disk: %w", id, err))...)
		}
	}
	if err := verify.ClearNoSpace(ctx, n.cl, n.timeout); err != nil {
		errs = append(errs, fmt.Errorf("metanodetest: %w", err))
	}
	n.mu.Lock()
	n.ops.filler, n.ops.fullNode = "", ""
	if len(errs) == 0 {
		n.ops.DiskFullCleared++
	}
	n.mu.Unlock()
	return errors.Join(errs...)
}

// topUp keeps the disk full (verify.TopUp) until ctx ends.
func topUp(ctx context.Context, path string) {
	t := time.NewTicker(verify.TopUpEvery)
	defer t.Stop()
	for {
		_, _ = verify.TopUp(path)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ---- corrupt ----

func (n *Nemesis) injectCorrupt(ctx context.Context, f *verify.Fault) error {
	id := f.Nodes[0]
	if err := n.crash(ctx, id); err != nil {
		return err
	}
	n.mu.Lock()
	n.ops.corrupt = id
	n.mu.Unlock()
	kind, path, err := verify.DamageFile(n.c.Get(id).Dir, f.Params["file"], f.Pick)
	if err != nil {
		return err
	}
	n.mu.Lock()
	if n.ops.CorruptFiles == nil {
		n.ops.CorruptFiles = map[string]int{}
	}
	n.ops.CorruptFiles[kind]++
	var walErr error
	if kind == "wal" {
		walErr = walRecoveryError(path)
	}
	n.ops.corruptWAL = walErr
	n.mu.Unlock()
	rerr := n.c.Restart(id)
	n.mu.Lock()
	n.ops.corruptStarted = rerr == nil
	n.mu.Unlock()
	n.log.Info("nemesis: flipped bytes in a stopped follower's file and started it", "fault", f.ID, "node", id, "kind", kind, "file", path, "recovery must fail", walErr, "start", rerr)
	if rerr != nil {
		// Detected at start: the node refuses to run on damaged files.
		n.mu.Lock()
		n.ops.CorruptRefused++
		n.mu.Unlock()
	}
	return nil
}

// halted returns the first replica of node id that halted (a storage
// failure, an entry it cannot apply, a fence), or nil.
func (n *Nemesis) halted(id string) error {
	node := n.c.Running(id)
	if node == nil {
		return nil
	}
	h := node.Halted()
	for _, g := range slices.Sorted(maps.Keys(h)) {
		return fmt.Errorf("%s: %w", g, h[g])
	}
	return nil
}

// healCorrupt counts whether the damaged node noticed (if it runs), then
// replaces its copy: forced removal, wipe, re-add, join.
func (n *Nemesis) healCorrupt(ctx context.Context) error {
	n.mu.Lock()
	id, walErr, started := n.ops.corrupt, n.ops.corruptWAL, n.ops.corruptStarted
	n.mu.Unlock()
	if id == "" {
		return nil
	}
	var broken error
	if n.c.Running(id) != nil {
		err := n.halted(id)
		n.mu.Lock()
		if err != nil {
			n.ops.CorruptHalted++
		} else {
			n.ops.CorruptUnseen++
		}
		n.mu.Unlock()
		n.log.Info("nemesis: damaged node at heal", "node", id, "halted", err)
		if err == nil && started && walErr != nil {
			// RocksDB replays the newest log at every start (DamageFile
			// picks it), and its damage is of a kind its recovery fails
			// on, not a torn tail it drops.
			broken = fmt.Errorf("%w: corrupt: %s started on its damaged write-ahead log (%v) and halted no replica by the heal, want it refused to start (the log is replayed at every start)", ErrBrokenPromise, id, walErr)
		}
	}
	if err := n.removeAndStop(ctx, id); err != nil {
		return errors.Join(broken, err)
	}
	if err := n.readd(ctx, id); err != nil {
		return errors.Join(broken, err)
	}
	n.mu.Lock()
	n.ops.corrupt, n.ops.corruptWAL, n.ops.corruptStarted = "", nil, false
	n.ops.CorruptReplaced++
	n.mu.Unlock()
	return broken
}

// ---- upgrade ----

// injectUpgrade restarts every node but one at sm.FeatureLevel, Nodes[0]
// first, one at a time, and checks the cluster version stayed where it
// was (a member still runs the older level). On a cluster already at
// sm.FeatureLevel it is a rolling restart at that level.
func (n *Nemesis) injectUpgrade(ctx context.Context, f *verify.Fault) error {
	from := n.clusterVersion()
	order := append([]string{f.Nodes[0]}, slices.DeleteFunc(n.Nodes(), func(id string) bool { return id == f.Nodes[0] })...)
	n.mu.Lock()
	n.ops.upgradeLeft, n.ops.upgradeFrom = order, from
	n.mu.Unlock()
	for range len(order) - 1 {
		if err := n.upgradeNext(ctx); err != nil {
			return err
		}
	}
	if v := n.clusterVersion(); v != from {
		return fmt.Errorf("metanodetest: upgrade: cluster version %d while %s runs level %d, want it to stay %d", v, order[len(order)-1], from, from)
	}
	return nil
}

// healUpgrade restarts the nodes left at the newer level and waits until
// every node sees the cluster version raised to it.
func (n *Nemesis) healUpgrade(ctx context.Context) error {
	for {
		n.mu.Lock()
		left := len(n.ops.upgradeLeft)
		n.mu.Unlock()
		if left == 0 {
			break
		}
		if err := n.upgradeNext(ctx); err != nil {
			return err
		}
	}
	n.mu.Lock()
	broken := n.ops.upgradeHalts
	n.ops.upgradeHalts = nil
	n.mu.Unlock()
	err := poll.Until(ctx, func() error {
		for _, id := range n.nodes {
			node := n.c.Running(id)
			if node == nil {
				return fmt.Errorf("%w: %s", ErrNodeDown, id)
			}
			if v := node.ClusterVersion(); v != sm.FeatureLevel {
				return fmt.Errorf("metanodetest: upgrade: %s sees cluster version %d, want %d", id, v, sm.FeatureLevel)
			}
		}
		return nil
	})
	if err != nil {
		return errors.Join(broken, err)
	}
	n.mu.Lock()
	if n.ops.upgradeFrom < sm.FeatureLevel {
		n.ops.VersionRaised++
	}
	n.mu.Unlock()
	return broken
}

// upgradeNext restarts the next node of the upgrade at sm.FeatureLevel
// (an orderly stop, as an operator's rolling restart does) and waits until
// every group has a leader again.
func (n *Nemesis) upgradeNext(ctx context.Context) error {
	var halts []error
	for _, id := range n.nodes {
		if err := n.halted(id); err != nil {
			halts = append(halts, fmt.Errorf("%w: upgrade: %s's replica of %v (halted during the rolling upgrade, want no older member given an entry it cannot apply)", ErrBrokenPromise, id, err))
		}
	}
	n.mu.Lock()
	id := n.ops.upgradeLeft[0]
	n.ops.upgradeHalts = errors.Join(append([]error{n.ops.upgradeHalts}, halts...)...)
	n.mu.Unlock()
	n.c.Stop(id)
	n.c.SetFeatureLevel(id, sm.FeatureLevel)
	if err := n.c.Restart(id); err != nil {
		return fmt.Errorf("metanodetest: upgrade: restart %s at level %d: %w", id, sm.FeatureLevel, err)
	}
	n.mu.Lock()
	n.ops.upgradeLeft = n.ops.upgradeLeft[1:]
	older := len(n.ops.upgradeLeft) > 0
	n.ops.Upgraded++
	n.mu.Unlock()
	if err := n.waitLeaders(ctx); err != nil || !older {
		return err
	}
	n.leadMixed(ctx, id)
	return nil
}

// upgradeSoak is how long a rolling upgrade's mixed cluster runs under
// load after each step while an older member still runs: a hash-check
// round or two at the lanes' interval (runner_test.go: 1 s, jittered to
// 0.5-1.5 s), so that a newer leader proposes whatever it would before
// the next step checks the replicas.
const upgradeSoak = 2 * time.Second

// leadMixed moves every group's leadership to id, just restarted at the
// newer level while an older member still runs, and lets the mixed
// cluster run for upgradeSoak: the newer release leading its groups is
// where a cluster version that did not hold would show (an older member
// given an entry it cannot apply halts, which the next step reports).
// Without it, the restarted node (a follower after its restart) rarely
// led before the next step: the planted bug ownlevel (operations gated by
// the node's own level) went uncaught in seeds 1-6, with one older
// replica halting only as the last node was being restarted. Transfers
// are best effort: one that fails (an election undid it, a slow target)
// is logged, not an error of the fault.
func (n *Nemesis) leadMixed(ctx context.Context, id string) {
	for _, g := range n.groups() {
		if _, voters := n.voters(g); !slices.Contains(voters, id) {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := n.cl.TransferLeader(cctx, g, id)
		cancel()
		if err != nil {
			n.log.Debug("nemesis: upgrade: transfer", "group", g, "to", id, "err", err)
		}
	}
	verify.Sleep(ctx, upgradeSoak)
}

// clusterVersion is the lowest cluster version a running node sees (0 if
// none runs).
func (n *Nemesis) clusterVersion() uint32 {
	v := uint32(0)
	for _, id := range n.nodes {
		if node := n.c.Running(id); node != nil && (v == 0 || node.ClusterVersion() < v) {
			v = node.ClusterVersion()
		}
	}
	return v
}
