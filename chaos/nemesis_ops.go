package chaos

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/metamq/meta/verify"
	"github.com/metamq/meta/verify/poll"
)

// The operations faults (verify/fault_ops.go) on containers:
//
//	disk-full   a filler file in Nodes[0]'s host data directory (a tmpfs
//	            of its own: Options.DataFS) leaves half its floor
//	            (NemesisConfig.MinFreeBytes, the nodes' --min-free-bytes)
//	            free; Inject returns once the NOSPACE alarm is listed and
//	            a probe write is refused with NOSPACE. Heal notes a
//	            problem if the node stopped, removes the filler and
//	            disarms the alarm until a write goes through. One fault in
//	            three (verify.FillsToTheBrim) fills the filesystem whole:
//	            RocksDB meets ENOSPC; Heal notes whether a replica
//	            stopped on it and restarts the node (SIGTERM, start)
//	            before the disarm.
//	corrupt     Kill Nodes[0], flip bytes in one of its files
//	            (verify.DamageFile), Start it: a start that fails is the
//	            damage detected; a node that runs is watched in its log
//	            for a replica halted or fenced. Heal replaces its copy as
//	            the README runbook does: forced RemoveMember, then rejoin
//	            (kill, wipe, AddMember, recreate with --join, start).
//	upgrade     a rolling restart, one node at a time (SIGTERM, recreate
//	            without --feature-level so that it runs its binary's
//	            level, start, every group led again): every node but one
//	            at Inject, the last at Heal, which then waits until every
//	            node reports the cluster version at its feature level.
//	            The cluster starts at the base level (RunOptions
//	            FeatureLevel) for the version to rise.
//
// What each observed goes into the run's notes ("ops:" lines, counted by
// OpsCounts).

// opsState is the operations fault in progress. Guarded by Nemesis.mu.
type opsState struct {
	filler, fullNode string
	// brim: the disk-full fault filled the filesystem whole; fullLog is
	// the size of the node's log before it did.
	brim    bool
	fullLog int64
	topUp   *loop // keeps the disk full (verify.TopUp) until Heal
	// corrupt is the damaged node until Heal replaced it; corruptLog is
	// the size of its log before it was started on the damage.
	corrupt    string
	corruptLog int64
	upgrade    []string // nodes an upgrade has still to restart
	from       uint32   // the cluster version before the upgrade
}

// Prefixes of the notes that count what the operations faults did.
const (
	NoteNoSpace        = "ops: NOSPACE refusal seen"
	NoteNoSpaceCleared = "ops: NOSPACE cleared"
	NoteENOSPCHalted   = "ops: a replica stopped on the full disk"
	NoteCorruptRefused = "ops: damaged node refused to start"
	NoteCorruptHalted  = "ops: damaged node halted or fenced a replica"
	NoteCorruptUnseen  = "ops: damage not noticed before heal"
	NoteCorruptReplace = "ops: damaged node replaced"
	NoteVersionRaised  = "ops: cluster version raised"
)

// opsNotes are the notes OpsObserved counts, in the order it lists them.
var opsNotes = []string{NoteNoSpace, NoteENOSPCHalted, NoteNoSpaceCleared, NoteCorruptRefused, NoteCorruptHalted, NoteCorruptUnseen, NoteCorruptReplace, NoteVersionRaised}

// OpsObserved counts notes by the operations-fault observation they
// start with (the Note* prefixes, without "ops: "); nil when there is
// none.
func OpsObserved(notes []Note) map[string]int {
	var out map[string]int
	for _, n := range notes {
		for _, p := range opsNotes {
			if strings.HasPrefix(n.Text, p) {
				if out == nil {
					out = map[string]int{}
				}
				out[strings.TrimPrefix(p, "ops: ")]++
			}
		}
	}
	return out
}

// haltMarks are what a node logs when a replica stops applying (sm/halt.go,
// sm/hashcheck.go) or the leader fences one (CORRUPT).
var haltMarks = []string{"the group stops applying on this node", "CORRUPT:"}

// opsOnNode refuses an operations fault bound to no node before inject
// runs.
func opsOnNode(inject func(ctx context.Context, f *verify.Fault) error) func(ctx context.Context, f *verify.Fault) error {
	return func(ctx context.Context, f *verify.Fault) error {
		if len(f.Nodes) == 0 {
			return fmt.Errorf("chaos: %s: no node", f.Kind)
		}
		return inject(ctx, f)
	}
}

// healAllOps ends whatever operations fault is left.
func (m *Nemesis) healAllOps(ctx context.Context) error {
	m.mu.Lock()
	st := m.ops
	m.mu.Unlock()
	var errs []error
	if st.filler != "" {
		errs = append(errs, m.healDiskFull(ctx, nil))
	}
	if st.corrupt != "" {
		errs = append(errs, m.healCorrupt(ctx, nil))
	}
	if len(st.upgrade) > 0 {
		errs = append(errs, m.healUpgrade(ctx, nil))
	}
	return errors.Join(errs...)
}

// ---- disk-full ----

// AlarmLevel is the feature level the NOSPACE alarm needs (AlarmSet in
// sm/version.go, which chaos cannot import; ci/route_test.go holds them
// equal): a cluster whose version is below it (a rolling upgrade from the
// base level not finished) cannot raise the alarm at all.
const AlarmLevel = 2

func (m *Nemesis) injectDiskFull(ctx context.Context, f *verify.Fault) error {
	id := f.Nodes[0]
	if v, _, err := m.clusterVersion(ctx); err == nil && v < AlarmLevel {
		m.note(f, false, "ops: disk-full skipped: cluster version %d cannot raise the NOSPACE alarm (it needs %d)", v, AlarmLevel)
		return nil
	}
	dir, err := m.c.DataDir(id)
	if err != nil {
		return err
	}
	brim := verify.FillsToTheBrim(f)
	logSize := m.logSize(id)
	path, fill, err := verify.FillDir(dir, m.cfg.MinFreeBytes, brim)
	m.mu.Lock()
	m.ops.filler, m.ops.fullNode, m.ops.brim, m.ops.fullLog = path, id, brim, logSize
	m.mu.Unlock()
	if err != nil {
		return fmt.Errorf("chaos: %s: %w", id, err)
	}
	if brim {
		l := m.startLoop("disk-full top-up", verify.TopUpEvery, func(context.Context, int) error {
			_, err := verify.TopUp(path)
			return err
		})
		m.mu.Lock()
		m.ops.topUp = l
		m.mu.Unlock()
	}
	if err := verify.AwaitNoSpace(ctx, m.adm, id, m.cfg.OpTimeout); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	how := "below its floor"
	if brim {
		how = "to the brim"
	}
	m.note(f, false, "%s: %s's disk filled %s (%d bytes); alarm listed, a write refused", NoteNoSpace, id, how, fill)
	return nil
}

// logSize is the size of node's log now (0 when unknown).
func (m *Nemesis) logSize(node string) int64 {
	if lp, err := m.c.LogPath(node); err == nil {
		if fi, err := os.Stat(lp); err == nil {
			return fi.Size()
		}
	}
	return 0
}

func (m *Nemesis) healDiskFull(ctx context.Context, f *verify.Fault) error {
	m.mu.Lock()
	path, id, brim, from, l := m.ops.filler, m.ops.fullNode, m.ops.brim, m.ops.fullLog, m.ops.topUp
	m.ops.topUp = nil
	m.mu.Unlock()
	if l != nil {
		l.halt()
	}
	if id == "" {
		return nil // skipped
	}
	st, err := m.c.State(ctx, id)
	if err == nil && !st.Running {
		m.note(f, true, "disk-full: %s stopped while its disk was full; want it up, refusing writes", id)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if brim {
		if line := m.logSince(id, from, haltMarks); line != "" {
			m.note(f, false, "%s: %s: %s", NoteENOSPCHalted, id, line)
		} else {
			m.note(f, false, "ops: disk-full to the brim: no replica of %s stopped (the alarm came first)", id)
		}
		// A replica stopped on the full disk resumes only after a
		// restart; the alarm's storage failure goes with it.
		if err == nil && st.Running {
			m.mark(m.killed, []string{id}, true)
			if err := m.c.Stop(ctx, id); err != nil {
				return err
			}
			if err := m.c.Start(ctx, id); err != nil {
				return err
			}
			m.mark(m.killed, []string{id}, false)
		}
	}
	m.mu.Lock()
	m.ops.filler, m.ops.fullNode, m.ops.brim = "", "", false
	m.mu.Unlock()
	if err := verify.ClearNoSpace(ctx, m.adm, m.cfg.OpTimeout); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	m.note(f, false, "%s: space freed on %s, alarm disarmed, a write went through", NoteNoSpaceCleared, id)
	return nil
}

// ---- corrupt ----

func (m *Nemesis) injectCorrupt(ctx context.Context, f *verify.Fault) error {
	id := f.Nodes[0]
	m.mark(m.killed, []string{id}, true)
	if err := m.c.Kill(ctx, id); err != nil {
		return err
	}
	m.mu.Lock()
	m.ops.corrupt = id
	m.mu.Unlock()
	dir, err := m.c.DataDir(id)
	if err != nil {
		return err
	}
	kind, path, err := verify.DamageFile(dir, f.Params["file"], f.Pick)
	if err != nil {
		return err
	}
	logSize := m.logSize(id)
	m.mu.Lock()
	m.ops.corruptLog = logSize
	m.mu.Unlock()
	if err := m.c.Start(ctx, id); err != nil {
		m.note(f, false, "%s: %s, bytes flipped in its %s file %s: %v", NoteCorruptRefused, id, kind, strings.TrimPrefix(path, dir+"/"), err)
		return nil
	}
	m.mark(m.killed, []string{id}, false)
	m.note(f, false, "ops: %s started on a damaged %s file %s", id, kind, strings.TrimPrefix(path, dir+"/"))
	return nil
}

// healCorrupt notes whether a running damaged node noticed (its log since
// the start), then replaces its copy.
func (m *Nemesis) healCorrupt(ctx context.Context, f *verify.Fault) error {
	m.mu.Lock()
	id, from := m.ops.corrupt, m.ops.corruptLog
	m.mu.Unlock()
	if st, err := m.c.State(ctx, id); err == nil && st.Running {
		if line := m.logSince(id, from, haltMarks); line != "" {
			m.note(f, false, "%s: %s: %s", NoteCorruptHalted, id, line)
		} else {
			m.note(f, false, "%s: %s", NoteCorruptUnseen, id)
		}
	}
	if err := m.ensureRemoved(ctx, id, verify.RemoveForced); err != nil {
		return err
	}
	m.mark(m.removed, []string{id}, true)
	if err := m.rejoin(ctx, f, id); err != nil {
		return err
	}
	m.mu.Lock()
	m.ops.corrupt = ""
	m.mu.Unlock()
	m.note(f, false, "%s: %s", NoteCorruptReplace, id)
	return m.waitPlaced(ctx, f, id)
}

// logSince returns the first line of node's log after offset that holds
// one of marks, or "".
func (m *Nemesis) logSince(node string, offset int64, marks []string) string {
	lp, err := m.c.LogPath(node)
	if err != nil {
		return ""
	}
	b, err := os.ReadFile(lp)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	for _, line := range strings.Split(string(b[offset:]), "\n") {
		for _, mark := range marks {
			if strings.Contains(line, mark) {
				return line
			}
		}
	}
	return ""
}

// ---- upgrade ----

func (m *Nemesis) injectUpgrade(ctx context.Context, f *verify.Fault) error {
	from, _, err := m.clusterVersion(ctx)
	if err != nil {
		return err
	}
	order := append([]string{f.Nodes[0]}, slices.DeleteFunc(slices.Clone(m.nodes), func(n string) bool { return n == f.Nodes[0] })...)
	m.mu.Lock()
	m.ops.upgrade, m.ops.from = order, from
	m.mu.Unlock()
	for range len(order) - 1 {
		if err := m.upgradeNext(ctx, f); err != nil {
			return err
		}
	}
	if v, _, err := m.clusterVersion(ctx); err == nil && v != from {
		return fmt.Errorf("chaos: upgrade: cluster version %d while %s has not been restarted, want it to stay %d", v, order[len(order)-1], from)
	}
	return nil
}

func (m *Nemesis) healUpgrade(ctx context.Context, f *verify.Fault) error {
	for {
		m.mu.Lock()
		left := len(m.ops.upgrade)
		m.mu.Unlock()
		if left == 0 {
			break
		}
		if err := m.upgradeNext(ctx, f); err != nil {
			return err
		}
	}
	var v, level uint32
	err := poll.Until(ctx, func() error {
		var err error
		v, level, err = m.clusterVersion(ctx)
		if err != nil {
			return err
		}
		return poll.Check(v == level, fmt.Sprintf("chaos: upgrade: cluster version %d, want every node's feature level %d", v, level))
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	from := m.ops.from
	m.mu.Unlock()
	if from < v {
		m.note(f, false, "%s: from %d to %d", NoteVersionRaised, from, v)
	} else {
		m.note(f, false, "ops: rolling restart at cluster version %d", v)
	}
	return nil
}

// upgradeNext restarts the next node of the upgrade without its
// --feature-level flag and waits until it serves and every group has a
// leader.
func (m *Nemesis) upgradeNext(ctx context.Context, f *verify.Fault) error {
	m.mu.Lock()
	id := m.ops.upgrade[0]
	m.mu.Unlock()
	args, err := m.c.Args(id)
	if err != nil {
		return err
	}
	m.mark(m.killed, []string{id}, true)
	if err := m.c.Stop(ctx, id); err != nil {
		return err
	}
	if err := m.c.Recreate(ctx, id, WithoutFlag(args, "--feature-level")); err != nil {
		return err
	}
	if err := m.c.Start(ctx, id); err != nil {
		return err
	}
	m.mark(m.killed, []string{id}, false)
	m.mu.Lock()
	m.ops.upgrade = m.ops.upgrade[1:]
	m.mu.Unlock()
	m.note(f, false, "ops: %s restarted at its binary's feature level", id)
	return poll.Until(ctx, func() error {
		gs, err := m.adm.ListGroups(ctx)
		if err != nil {
			return err
		}
		leaders := m.leaders(ctx)
		for _, g := range gs.Groups {
			if leaders[g.Group] == nil {
				return fmt.Errorf("chaos: upgrade: no leader of %s after restarting %s", g.Group, id)
			}
		}
		return nil
	})
}

// clusterVersion asks every node of the cluster for its status and
// returns the lowest cluster version they see and the lowest feature
// level they run at.
func (m *Nemesis) clusterVersion(ctx context.Context) (version, level uint32, err error) {
	for i, n := range m.nodes {
		st, err := m.status(ctx, n)
		if err != nil {
			return 0, 0, fmt.Errorf("chaos: status of %s: %w", n, err)
		}
		if i == 0 || st.ClusterVersion < version {
			version = st.ClusterVersion
		}
		if i == 0 || st.FeatureLevel < level {
			level = st.FeatureLevel
		}
	}
	return version, level, nil
}

// WithoutFlag returns args without flag and its value ("--flag v" or
// "--flag=v").
func WithoutFlag(args []string, flag string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == flag:
			i++
		case strings.HasPrefix(args[i], flag+"="):
		default:
			out = append(out, args[i])
		}
	}
	return out
}
