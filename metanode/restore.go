package metanode

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rocks"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
)

// Restoring a backup. A backup (metactl snapshot save) holds every group's
// state at one applied index each. Restore lays out the data directory of
// ONE initial member of a NEW cluster that starts from that state; every
// initial member runs it with the same backup and the same configuration
// (initial cluster, cluster id, replication factors), as each would start
// a new cluster with the same flags, and each gets the groups the initial
// directory places on it. The directory then holds what a first start
// would have made (the node's identity, each hosted group bootstrapped
// with its initial configuration), plus each group's backed-up data at
// applied index 0 and the backup's revision; metadata-0 without the old
// cluster's record, members and directory, which the new cluster's first
// metadata leader records as in any new cluster. The node is then started
// as on any later start (its data directory says everything).
//
// The directory is built beside DataDir (DataDir.restoring) and renamed
// into place only once whole: a restore that fails leaves no DataDir.

// RestoreGroup is one group of a backup that has been verified.
type RestoreGroup struct {
	Name string
	// AppliedIndex, Revision, Hash and Keys are the backup's record of
	// the group's state: the stream must say the same index and revision,
	// and the restored state must hash the same.
	AppliedIndex, Revision, Hash, Keys uint64
	// Open returns the group's backup stream.
	Open func() io.Reader
}

// Restore lays out cfg.DataDir for node cfg.ID of a new cluster
// (cfg.InitialCluster, cfg.ClusterID, which must be set) from the
// backup's groups. The new cluster has the backup's groups: the groups a
// new cluster of the backup's counts has, or, for a backup of a cluster
// whose groups were split, the backup's own groups, each owning the ranges
// its backup owns (restorePlan). cfg.OffsetGroups and cfg.DataGroups are
// the counts the backed-up cluster was created with (its manifest's); for
// a cluster whose groups are still those, the backup's groups decide
// them. DataDir must not exist or be empty. It returns the groups it
// restored here.
func Restore(cfg Config, groups []RestoreGroup) ([]string, error) {
	if err := checkRestore(cfg); err != nil {
		return nil, err
	}
	owned, err := checkBackup(groups)
	if err != nil {
		return nil, err
	}
	offsets, datas, restored, err := restorePlan(groups, owned)
	if err != nil {
		return nil, fmt.Errorf("metanode: restore: %w", err)
	}
	// A split cluster keeps the counts it was created with (the backup's
	// manifest says them), as it did before the backup: its nodes
	// restart with the same flags.
	if restored == nil || cfg.OffsetGroups < 1 || cfg.DataGroups < 1 {
		cfg.OffsetGroups, cfg.DataGroups = offsets, datas
	}
	if entries, err := os.ReadDir(cfg.DataDir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("metanode: restore: data directory %s is not empty; restore into a new one", cfg.DataDir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("metanode: restore: %w", err)
	}
	final := cfg.DataDir
	cfg.DataDir = filepath.Clean(final) + ".restoring"
	if err := os.RemoveAll(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("metanode: restore: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("metanode: restore: %w", err)
	}
	hosted, err := layOut(cfg, groups, restored)
	if err != nil {
		return nil, errors.Join(err, os.RemoveAll(cfg.DataDir))
	}
	if err := os.Remove(final); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, errors.Join(fmt.Errorf("metanode: restore: %w", err), os.RemoveAll(cfg.DataDir))
	}
	if err := os.Rename(cfg.DataDir, final); err != nil {
		return nil, errors.Join(fmt.Errorf("metanode: restore: %w", err), os.RemoveAll(cfg.DataDir))
	}
	return hosted, syncDir(filepath.Dir(final))
}

// checkRestore checks the configuration, naming what is wrong.
func checkRestore(cfg Config) error {
	var errs []error
	if cfg.ID == "" {
		errs = append(errs, errors.New("the node id (ID, --id) is required"))
	}
	if cfg.DataDir == "" {
		errs = append(errs, errors.New("the data directory (DataDir, --data-dir) is required"))
	}
	if cfg.ClusterID == "" {
		errs = append(errs, errors.New("the new cluster id (ClusterID) is required"))
	}
	if !slices.ContainsFunc(cfg.InitialCluster, func(p Peer) bool { return p.ID == cfg.ID }) {
		errs = append(errs, fmt.Errorf("the initial cluster (InitialCluster, --initial-cluster) must list this node (%q)", cfg.ID))
	}
	if len(cfg.Join) > 0 {
		errs = append(errs, errors.New("join (Join): a restored cluster is new; its nodes restore, none joins"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("metanode: restore: %w", errors.Join(errs...))
	}
	return nil
}

// restorePlan decides the new cluster's groups from the backup's, naming
// what is wrong: metadata-0 and offset and data groups, each of which owns
// (by its backup's ownership record) ranges that, per kind, tile the hash
// space once, none of them moving (a backup taken during a split). It
// returns the counts per kind, and the groups with their ranges when they
// are not the groups and ranges a new cluster of those counts has (nil
// then: the new cluster's identity is its counts, as for any new cluster).
// Groups without an ownership record (a cluster from before ranges) must
// be exactly a new cluster's.
func restorePlan(groups []RestoreGroup, owned map[string]*logpb.Ownership) (offsets, datas int, restored []*logpb.GroupRecord, err error) {
	var names []string
	ranges := map[string]metapb.RangeMap{}
	unowned := false
	for _, g := range groups {
		names = append(names, g.Name)
		kind, err := metapb.GroupKind(g.Name)
		if err != nil {
			return 0, 0, nil, err
		}
		switch kind {
		case "offset":
			offsets++
		case "data":
			datas++
		default:
			continue
		}
		own := owned[g.Name]
		switch {
		case own == nil:
			unowned = true
		case own.Legacy:
			return 0, 0, nil, fmt.Errorf("the backup's %s owns %s: its cluster routes keys by group count (one created before ranges), which a restore cannot carry yet", g.Name, rangesText(own))
		case len(own.Moving) > 0 || own.Ingesting:
			return 0, 0, nil, fmt.Errorf("the backup's %s was splitting when the backup was taken (it owns %s, with a range moving or being copied): take the backup again once the split is done (metactl group list shows none under way)", g.Name, rangesText(own))
		}
		rec := &logpb.GroupRecord{Name: g.Name, Kind: kind}
		for _, r := range own.GetOwned() {
			rec.Ranges = append(rec.Ranges, proto.CloneOf(r))
			ranges[kind] = append(ranges[kind], metapb.Range{Lo: r.Lo, Hi: r.Hi, Group: g.Name, Version: r.Version})
		}
		restored = append(restored, rec)
	}
	want := metapb.Groups(offsets, datas)
	if !slices.Contains(names, metapb.MetadataGroup) || offsets == 0 || datas == 0 || len(names) != offsets+datas+1 {
		return 0, 0, nil, fmt.Errorf("the backup holds groups %v: a cluster has metadata-0 and at least one offset and one data group", names)
	}
	same := slices.Equal(sorted(names), sorted(want))
	if unowned {
		if !same {
			return 0, 0, nil, fmt.Errorf("the backup holds groups %v, some without ranges (a cluster from before ranges), which are not a new cluster's %v", names, want)
		}
		return offsets, datas, nil, nil
	}
	for _, kind := range []string{"offset", "data"} {
		if err := ranges[kind].Sorted().Check(); err != nil {
			return 0, 0, nil, fmt.Errorf("the backup's %s groups do not own the whole hash space once (%s): %w", kind, metapb.FormatRanges(ranges[kind].Sorted()), err)
		}
	}
	if same {
		fresh := map[string]*logpb.GroupRecord{}
		for _, rec := range initialDirectory([]string{"n"}, want, 1, 1) {
			fresh[rec.Name] = rec
		}
		if !slices.ContainsFunc(restored, func(rec *logpb.GroupRecord) bool {
			return !slices.EqualFunc(rec.Ranges, fresh[rec.Name].GetRanges(), func(a, b *logpb.HashRange) bool { return proto.Equal(a, b) })
		}) {
			return offsets, datas, nil, nil
		}
	}
	slices.SortFunc(restored, func(a, b *logpb.GroupRecord) int {
		return cmp.Or(cmp.Compare(b.Kind, a.Kind), cmp.Compare(lastIndex(a.Name), lastIndex(b.Name)))
	})
	return offsets, datas, restored, nil
}

// CheckBackup reads every group's backup stream whole and verifies it
// (sm.CheckBackup: header and file checksums, sizes, the group's kind),
// and that it is at the applied index and revision recorded for it,
// writing nothing.
func CheckBackup(groups []RestoreGroup) error {
	_, err := checkBackup(groups)
	return err
}

// checkBackup is CheckBackup, returning each group's ownership record.
func checkBackup(groups []RestoreGroup) (map[string]*logpb.Ownership, error) {
	owned := map[string]*logpb.Ownership{}
	for _, g := range groups {
		kind, err := groupKind(g.Name)
		if err != nil {
			return nil, fmt.Errorf("metanode: backup: %w", err)
		}
		info, err := sm.CheckBackup(g.Open(), kind)
		if err != nil {
			return nil, fmt.Errorf("metanode: backup of %s: %w", g.Name, err)
		}
		if info.Applied.GetIndex() != g.AppliedIndex || info.Applied.GetRevision() != g.Revision {
			return nil, fmt.Errorf("metanode: backup of %s: the stream is at index %d, revision %d; the backup recorded index %d, revision %d",
				g.Name, info.Applied.GetIndex(), info.Applied.GetRevision(), g.AppliedIndex, g.Revision)
		}
		owned[g.Name] = info.Ownership
	}
	return owned, nil
}

func groupKind(name string) (sm.Kind, error) {
	kindName, err := metapb.GroupKind(name)
	if err != nil {
		return 0, err
	}
	return sm.ParseKind(kindName)
}

// layOut writes the data directory cfg.DataDir (empty); restored, when
// set, are the new cluster's groups (restorePlan).
func layOut(cfg Config, groups []RestoreGroup, restored []*logpb.GroupRecord) ([]string, error) {
	n := &Node{cfg: cfg, id: cfg.ID}
	id, err := n.newIdentity(context.Background())
	if err != nil {
		return nil, err
	}
	id.RestoredGroups = restored
	hosted := initialGroups(id)
	opts := cfg.Rocks
	opts.Dir = filepath.Join(cfg.DataDir, "db")
	db, err := rocks.Open(opts, hosted)
	if err != nil {
		return nil, fmt.Errorf("metanode: restore: open rocksdb: %w", err)
	}
	defer db.Close()
	confs := initialConfigurations(id)
	recs := map[string]*logpb.GroupRecord{}
	for _, rec := range initialRecords(id) {
		recs[rec.Name] = rec
	}
	for _, g := range groups {
		if !slices.Contains(hosted, g.Name) {
			continue
		}
		if err := restoreGroup(cfg, db, g, recs[g.Name], confs[g.Name]); err != nil {
			return nil, fmt.Errorf("metanode: restore %s: %w", g.Name, err)
		}
	}
	v, err := proto.Marshal(id)
	if err != nil {
		return nil, err
	}
	if err := db.Node().Put(keyIdentity, v, true); err != nil {
		return nil, fmt.Errorf("metanode: restore: write identity: %w", err)
	}
	return hosted, db.Close()
}

// restoreGroup restores one group's data and bootstraps its raft with
// conf, as a first start would. rec is the group's record in the new
// cluster's initial directory: a data or offset group must own the ranges
// it gives it (restorePlan made them so; a directory routing otherwise
// would send keys to the wrong group).
func restoreGroup(cfg Config, db *rocks.DB, g RestoreGroup, rec *logpb.GroupRecord, conf raft.Configuration) error {
	kind, err := groupKind(g.Name)
	if err != nil {
		return err
	}
	_, err = withStores(cfg, db, g.Name, func(s groupStores) (struct{}, error) {
		h, err := s.m.RestoreBackup(g.Open())
		if err != nil {
			return struct{}{}, err
		}
		if h.Hash != g.Hash || h.Keys != g.Keys || h.Revision != g.Revision {
			return struct{}{}, fmt.Errorf("restored state hashes %016x (%d keys, revision %d); the backup recorded %016x (%d keys, revision %d)",
				h.Hash, h.Keys, h.Revision, g.Hash, g.Keys, g.Revision)
		}
		if own := s.m.Ownership(); own != nil && kind != sm.KindMetadata {
			want := &logpb.Ownership{Owned: rec.GetRanges()}
			if !proto.Equal(own, want) {
				return struct{}{}, fmt.Errorf("the backup's group owns %s; the new cluster's directory gives it %s",
					rangesText(own), rangesText(want))
			}
		}
		return struct{}{}, s.bootstrap(cfg, conf)
	})
	return err
}

// syncDir fsyncs a directory, so that the entries made in it survive a
// crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func rangesText(o *logpb.Ownership) string {
	if o.Legacy {
		return "whatever is sent to it (routing by shard)"
	}
	var b strings.Builder
	for _, r := range o.Owned {
		fmt.Fprintf(&b, "[%d,%d)@%d ", r.Lo, r.Hi, r.Version)
	}
	if b.Len() == 0 {
		return "nothing"
	}
	return strings.TrimSpace(b.String())
}
