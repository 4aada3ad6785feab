package metanode

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rocks"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// Disaster recovery. When a majority of a cluster's nodes is lost for
// good, no group they shared can elect a leader again. Recover turns one
// surviving node (stopped) into a one-node cluster that carries on the
// same cluster: every group the survivor holds is forced, with
// hashicorp/raft's RecoverCluster, into a configuration of this node alone,
// keeping everything the survivor had applied or had in its log (entries
// it had not seen committed included: they may have been acknowledged);
// and metadata-0's members and directory are rewritten so that this node
// is the only member and the only replica of every group. Then the node
// starts as usual, and new nodes join it (member add, --join) and are
// filled by the controller as in any cluster.
//
// The cluster keeps its id: it is the same cluster, with the same data,
// revisions and routing, and brokers and clients configured with it keep
// working (a restore from a backup, which forks the cluster at a past
// point, gets a new id instead). The lost nodes must never come back with
// their old data (the runbook says to wipe them): their ids are no longer
// members and their configurations no longer count, but a pair of them
// restarted with their old data could still form a majority of the old
// configuration among themselves.
//
// The rewrite of metadata-0 is one entry appended (in memory only) after
// the survivor's log, which RecoverCluster applies last, so it lands in
// the state exactly as a replicated entry would, at an index of its own,
// before the snapshot that carries the new configuration. Every group's
// recovery is restartable: a run cut short is run again (entries already
// applied are skipped by index, the rewrite computes nothing to change
// twice), and nothing is written before every check passed.

// ErrLostGroups is returned by Recover when a group has no usable replica
// on the survivor: every replica of it was on a lost node.
var ErrLostGroups = errors.New("metanode: recover: groups with no replica on this node")

// RecoverReport says what Recover did.
type RecoverReport struct {
	ClusterID string
	// Addr is the survivor's address, as the directory records it (the
	// address of its only voter in every group).
	Addr string
	// Removed are the members removed (the lost nodes).
	Removed []string
	// Groups are the groups recovered on this node.
	Groups []string
	// NotVoter are groups whose replica here was not a voter: it may lack
	// writes the lost voters acknowledged.
	NotVoter []string
	// Recreated are groups every replica of which was lost, made again
	// empty on this node (RecoverOptions.RecreateLostGroups).
	Recreated []string
}

// RecoverOptions are Recover's choices.
type RecoverOptions struct {
	// DryRun checks and reports, writing nothing.
	DryRun bool
	// RecreateLostGroups makes a group with no replica here again, empty,
	// on this node (its ranges and record kept): its data is gone. Without
	// it such a group is refused. metadata-0 is never recreated.
	RecreateLostGroups bool
}

// Recover makes the stopped node cfg.ID, whose data directory is
// cfg.DataDir, the only member of its cluster (see above). It refuses,
// writing nothing, when the directory is in use, belongs to another node
// or holds no cluster, or when a group has no replica here (ErrLostGroups,
// naming them) unless opts say to recreate them empty.
func Recover(cfg Config, opts RecoverOptions) (*RecoverReport, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch {
	case cfg.ID == "":
		return nil, errors.New("metanode: recover: --id: the surviving node's id is required")
	case cfg.DataDir == "":
		return nil, errors.New("metanode: recover: --data-dir: the surviving node's data directory is required")
	}
	if _, err := os.Stat(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("metanode: recover: --data-dir: %w", err)
	}
	dbDir := filepath.Join(cfg.DataDir, "db")
	existing, err := rocks.ListGroups(dbDir)
	if err != nil {
		return nil, fmt.Errorf("metanode: recover: --data-dir: inspect %s: %w", dbDir, err)
	}
	if existing == nil {
		return nil, fmt.Errorf("metanode: recover: --data-dir: %s holds no node's data", cfg.DataDir)
	}
	ro := cfg.Rocks
	ro.Dir = dbDir
	db, err := rocks.Open(ro, existing)
	if err != nil {
		return nil, fmt.Errorf("metanode: recover: --data-dir: open %s (stop the node first: a running node holds its lock): %w", dbDir, err)
	}
	defer db.Close()
	id, err := storedIdentity(db)
	if err != nil {
		return nil, fmt.Errorf("metanode: recover: --data-dir: %w", err)
	}
	if id.NodeId != cfg.ID {
		return nil, fmt.Errorf("metanode: recover: --id: data directory %s belongs to node %q, not %q", cfg.DataDir, id.NodeId, cfg.ID)
	}
	p, err := planRecovery(cfg, db, existing, opts.RecreateLostGroups)
	if err != nil {
		return nil, err
	}
	rep := &RecoverReport{ClusterID: id.ClusterId, Addr: p.addr, Removed: p.removed, Groups: p.groups, NotVoter: p.notVoter,
		Recreated: p.recreated}
	if opts.DryRun {
		return rep, nil
	}
	// metadata-0 first: a group that its log (not yet applied) creates
	// and this node lacks is found there, before any other group changes.
	for _, name := range p.groups {
		var rewrite func(*sm.Machine) ([]*logpb.Op, error)
		if name == metapb.MetadataGroup {
			rewrite = p.rewrite
		}
		if recoverFault != nil {
			if err := recoverFault(name); err != nil {
				return nil, fmt.Errorf("metanode: recover %s: %w", name, err)
			}
		}
		if err := recoverGroup(cfg, db, name, p.addr, rewrite); err != nil {
			return nil, fmt.Errorf("metanode: recover %s: %w", name, err)
		}
		if name != metapb.MetadataGroup {
			continue
		}
		// Once the directory says this node hosts them.
		for _, lost := range p.recreated {
			if err := recreateGroup(cfg, db, lost, p.addr); err != nil {
				return nil, fmt.Errorf("metanode: recover: recreate %s: %w", lost, err)
			}
		}
	}
	if err := db.SyncWAL(); err != nil {
		return nil, fmt.Errorf("metanode: recover: %w", err)
	}
	return rep, db.Close()
}

// recoverFault, set by tests only, fails the recovery of a group before it
// begins (an interruption: a crash, a full disk).
var recoverFault func(group string) error

// storedIdentity reads the node's identity from its database.
func storedIdentity(db *rocks.DB) (*logpb.NodeIdentity, error) {
	v, ok, err := db.Node().Get(keyIdentity)
	if err != nil {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	if !ok {
		return nil, errors.New("the node's identity is not recorded (a first start that never finished)")
	}
	id := &logpb.NodeIdentity{}
	if err := proto.Unmarshal(v, id); err != nil {
		return nil, fmt.Errorf("decode identity: %w", err)
	}
	return id, nil
}

// recoveryPlan is what a recovery does, decided before anything is
// written.
type recoveryPlan struct {
	id        string
	addr      string
	groups    []string // hosted here, metadata-0 first
	removed   []string
	notVoter  []string
	recreated []string
}

// planRecovery reads metadata-0's directory (as applied here) and checks
// that this node is a member and holds a replica of every group (or that
// the groups it lacks are to be recreated).
func planRecovery(cfg Config, db *rocks.DB, existing []string, recreate bool) (*recoveryPlan, error) {
	if !slices.Contains(existing, metapb.MetadataGroup) {
		return nil, fmt.Errorf("%w: %s (the members and the directory are in it; restore a backup instead: metanode restore)", ErrLostGroups, metapb.MetadataGroup)
	}
	d, err := withStores(cfg, db, metapb.MetadataGroup, func(s groupStores) (*state.Directory, error) { return s.m.Directory() })
	if err != nil {
		return nil, fmt.Errorf("metanode: recover: read the directory: %w", err)
	}
	if d.Cluster == nil || len(d.Groups) == 0 {
		return nil, fmt.Errorf("metanode: recover: --data-dir: %s holds no formed cluster's directory (nothing to recover)", cfg.DataDir)
	}
	self := d.Member(cfg.ID)
	if self == nil {
		return nil, fmt.Errorf("metanode: recover: --id: %s is not a member of cluster %s as this node last knew it", cfg.ID, d.Cluster.ClusterId)
	}
	p := &recoveryPlan{id: cfg.ID, addr: self.Addr}
	for _, m := range d.Members {
		if m.Id != cfg.ID {
			p.removed = append(p.removed, m.Id)
		}
	}
	var lost []string
	for _, rec := range d.Groups {
		if deleted(rec) {
			continue // nothing to recover
		}
		usable := false
		if slices.Contains(existing, rec.Name) && hosts(rec, cfg.ID) {
			if usable, err = withStores(cfg, db, rec.Name, func(s groupStores) (bool, error) {
				return raft.HasExistingState(s.logs, s.stable, s.snaps)
			}); err != nil {
				return nil, fmt.Errorf("metanode: recover %s: %w", rec.Name, err)
			}
		}
		if !usable {
			lost = append(lost, rec.Name)
			continue
		}
		p.groups = append(p.groups, rec.Name)
		if !slices.ContainsFunc(rec.Replicas, func(r *logpb.Replica) bool { return r.Node == cfg.ID && r.Voter }) {
			p.notVoter = append(p.notVoter, rec.Name)
		}
	}
	if slices.Contains(lost, metapb.MetadataGroup) {
		return nil, fmt.Errorf("%w: %s (the replica here is not one of its replica set's, or was never filled; the members and the directory are in it): nothing was changed: restore a backup instead (metanode restore)",
			ErrLostGroups, metapb.MetadataGroup)
	}
	if len(lost) > 0 && !recreate {
		return nil, fmt.Errorf("%w: %v (their every replica was on a lost node, or the one here was never filled); nothing was changed: "+
			"restore a backup instead (metanode restore), or recover the rest and recreate these empty, their data gone (--recreate-lost-groups)", ErrLostGroups, lost)
	}
	p.recreated = lost
	slices.SortFunc(p.groups, func(a, b string) int {
		switch {
		case a == metapb.MetadataGroup:
			return -1
		case b == metapb.MetadataGroup:
			return 1
		}
		return strings.Compare(a, b)
	})
	return p, nil
}

// rewrite returns the operations that make this node the only member and
// the only (voting) replica of every group, from metadata-0's state once
// the survivor's whole log is applied: nothing when it already is.
func (p *recoveryPlan) rewrite(m *sm.Machine) ([]*logpb.Op, error) {
	d, err := m.Directory()
	if err != nil {
		return nil, err
	}
	var ops []*logpb.Op
	for _, mem := range d.Members {
		switch {
		case mem.Id != p.id:
			ops = append(ops, &logpb.Op{Op: &logpb.Op_MemberRemove{MemberRemove: &logpb.MemberRemove{Id: mem.Id}}})
		case mem.State != logpb.MemberState_MEMBER_STATE_ACTIVE:
			// The only member cannot be drained.
			ops = append(ops, &logpb.Op{Op: &logpb.Op_MemberSetState{MemberSetState: &logpb.MemberSetState{Id: p.id,
				State: logpb.MemberState_MEMBER_STATE_ACTIVE}}})
		}
	}
	alone := []*logpb.Replica{{Node: p.id, Voter: true}}
	var lost []string
	for _, rec := range d.Groups {
		if deleted(rec) {
			continue
		}
		recreated := slices.Contains(p.recreated, rec.Name)
		if !recreated && !slices.Contains(p.groups, rec.Name) {
			lost = append(lost, rec.Name) // made by an entry applied just now
			continue
		}
		if slices.EqualFunc(rec.Replicas, alone, func(a, b *logpb.Replica) bool { return proto.Equal(a, b) }) && (!recreated || rec.Parent == "") {
			continue
		}
		next := proto.CloneOf(rec)
		next.Replicas = alone
		if recreated {
			// A new, empty group: it owns its record's ranges from its
			// first term (initOwnership), not from a split.
			next.Parent, next.BaseRevision = "", 0
		}
		ops = append(ops, &logpb.Op{Op: &logpb.Op_GroupPut{GroupPut: &logpb.GroupPut{Group: next, ExpectedConfVer: rec.ConfVer}}})
	}
	if len(lost) > 0 {
		return nil, fmt.Errorf("%w: %v, created by entries this node had not applied; metadata-0 holds them applied now, no other group was changed",
			ErrLostGroups, lost)
	}
	return ops, nil
}

// groupStores are a group's state machine and raft stores, opened over
// the node's database.
type groupStores struct {
	m      *sm.Machine
	snaps  *sm.SnapStore
	logs   *rocks.LogStore
	stable *rocks.StableStore
}

// openStores opens a group's state machine and raft stores (Close the
// machine when done).
func openStores(cfg Config, db *rocks.DB, name string) (groupStores, error) {
	var s groupStores
	kind, err := groupKind(name)
	if err != nil {
		return s, err
	}
	if s.m, err = sm.New(sm.Config{Kind: kind, Group: name, DB: db, Logger: cfg.Logger}); err != nil {
		return s, err
	}
	fail := func(err error) (groupStores, error) {
		s.m.Close()
		return groupStores{}, err
	}
	if s.snaps, err = sm.NewSnapStore(sm.SnapStoreConfig{Dir: filepath.Join(cfg.DataDir, "snapshots", name), Machine: s.m, Logger: cfg.Logger}); err != nil {
		return fail(err)
	}
	if s.logs, err = db.LogStore(name); err != nil {
		return fail(err)
	}
	if s.stable, err = db.StableStore(name); err != nil {
		return fail(err)
	}
	return s, nil
}

// withStores runs fn on a group's stores, closed afterwards.
func withStores[T any](cfg Config, db *rocks.DB, name string, fn func(groupStores) (T, error)) (T, error) {
	s, err := openStores(cfg, db, name)
	if err != nil {
		var zero T
		return zero, err
	}
	defer s.m.Close()
	return fn(s)
}

// recoverGroup forces the group's configuration to this node alone
// (raft.RecoverCluster), after applying the survivor's whole log and, when
// rewrite is set, one more entry of the operations it returns.
func recoverGroup(cfg Config, db *rocks.DB, name, addr string, rewrite func(*sm.Machine) ([]*logpb.Op, error)) error {
	_, err := withStores(cfg, db, name, func(s groupStores) (struct{}, error) {
		// The state in RocksDB is whole and at or past the newest
		// snapshot unless a restore was cut short: then RecoverCluster
		// must restore the snapshot; otherwise restoring it would only
		// export the state and ingest it again.
		restore, err := s.snaps.NeedsRestore()
		if err != nil {
			return struct{}{}, err
		}
		next, term, err := nextEntry(s.logs, s.snaps)
		if err != nil {
			return struct{}{}, err
		}
		logs := &recoveryLog{LogStore: s.logs, index: next, term: term, data: func() ([]byte, error) {
			b := &logpb.Batch{NowUnixNano: time.Now().UnixNano()}
			if rewrite != nil {
				ops, err := rewrite(s.m)
				if err != nil {
					return nil, err
				}
				b.Ops = ops
			}
			return sm.EncodeBatch(b)
		}}
		rc := raft.DefaultConfig()
		rc.LocalID = raft.ServerID(cfg.ID)
		rc.Logger = newHclog(cfg.Logger, "raft")
		conf := aloneConfiguration(cfg.ID, addr)
		var fsm raft.FSM = s.m
		var snaps raft.SnapshotStore = s.snaps
		if !restore {
			fsm, snaps = keptState{s.m}, keptSnapshots{s.snaps}
		}
		if err := raft.RecoverCluster(rc, fsm, logs, s.stable, snaps, nil, conf); err != nil {
			return struct{}{}, err
		}
		if h := s.m.Halted(); h != nil {
			return struct{}{}, fmt.Errorf("the state machine halted applying the log: %w", h)
		}
		if s.m.AppliedIndex() != next {
			return struct{}{}, fmt.Errorf("applied index %d after recovery, want %d", s.m.AppliedIndex(), next)
		}
		if rewrite != nil {
			// The rewrite's results are not returned by RecoverCluster:
			// read back that it took (a run again finishes what it left).
			if ops, err := rewrite(s.m); err != nil || len(ops) > 0 {
				return struct{}{}, errors.Join(fmt.Errorf("the rewrite of the members and directory did not take: %d changes still to make", len(ops)), err)
			}
		}
		return struct{}{}, nil
	})
	return err
}

// recreateGroup makes a group of which no replica is left again, empty, on
// this node alone: what a replica here held of it (never filled, or a
// leftover) is deleted first. A recovery cut short after this finds the
// group's raft state and recovers it like any other.
func recreateGroup(cfg Config, db *rocks.DB, name, addr string) error {
	if slices.Contains(db.Groups(), name) {
		if err := db.DropGroup(name); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(filepath.Join(cfg.DataDir, "snapshots", name)); err != nil {
		return err
	}
	if err := db.AddGroup(name); err != nil {
		return err
	}
	conf := aloneConfiguration(cfg.ID, addr)
	_, err := withStores(cfg, db, name, func(s groupStores) (struct{}, error) { return struct{}{}, s.bootstrap(cfg, conf) })
	return err
}

// aloneConfiguration is a configuration of one voter, node id at addr.
func aloneConfiguration(id, addr string) raft.Configuration {
	return raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(addr)}}}
}

// bootstrap starts the group's raft with conf, as a first start does.
func (s groupStores) bootstrap(cfg Config, conf raft.Configuration) error {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	if err := raft.BootstrapCluster(rc, s.logs, s.stable, s.snaps, nil, conf); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	return nil
}

// nextEntry is the index and term of the entry that would follow the
// group's log (or its newest snapshot, when the log is empty).
func nextEntry(logs raft.LogStore, snaps raft.SnapshotStore) (index, term uint64, err error) {
	metas, err := snaps.List()
	if err != nil {
		return 0, 0, err
	}
	if len(metas) > 0 {
		index, term = metas[0].Index, metas[0].Term
	}
	last, err := logs.LastIndex()
	if err != nil {
		return 0, 0, err
	}
	if last > index {
		var l raft.Log
		if err := logs.GetLog(last, &l); err != nil {
			return 0, 0, err
		}
		index, term = l.Index, l.Term
	}
	return index + 1, term, nil
}

// recoveryLog is the group's log with one more entry at index, a command
// whose data is made when it is read, that is once every entry before it
// is applied.
type recoveryLog struct {
	*rocks.LogStore
	index, term uint64
	data        func() ([]byte, error)
}

func (l *recoveryLog) LastIndex() (uint64, error) { return l.index, nil }

func (l *recoveryLog) GetLog(index uint64, out *raft.Log) error {
	if index != l.index {
		return l.LogStore.GetLog(index, out)
	}
	data, err := l.data()
	if err != nil {
		return err
	}
	*out = raft.Log{Index: l.index, Term: l.term, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()}
	return nil
}

// keptState and keptSnapshots stand for the group's state machine and
// snapshot store when the state in RocksDB is whole and at or past the
// newest snapshot (as on any start, raft.Config.NoSnapshotRestoreOnStart):
// RecoverCluster's restore of that snapshot is then nothing to do.
type keptState struct{ *sm.Machine }

func (keptState) Restore(rc io.ReadCloser) error { return rc.Close() }

type keptSnapshots struct{ *sm.SnapStore }

func (s keptSnapshots) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	metas, err := s.List()
	if err != nil {
		return nil, nil, err
	}
	for _, m := range metas {
		if m.ID == id {
			return m, io.NopCloser(bytes.NewReader(nil)), nil
		}
	}
	return nil, nil, fmt.Errorf("no snapshot %s", id)
}
