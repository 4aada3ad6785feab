package metanode

import (
	"slices"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
)

// Default replication factors of a new cluster.
const (
	DefaultReplicationFactor         = 3
	DefaultMetadataReplicationFactor = 3
)

// initialDirectory places a new cluster's groups on its initial members:
// metadata-0 on the first mdRF members (by id), every other group on rf
// members round-robin, so that replica counts differ by at most one.
// Every initial member computes the same directory from the same flags,
// and bootstraps exactly the groups it is given; the controller balances
// from there (leaders, zones, load).
func initialDirectory(members, groups []string, rf, mdRF int) []*logpb.GroupRecord {
	ids := slices.Clone(members)
	slices.Sort(ids)
	n := len(ids)
	var out []*logpb.GroupRecord
	next := 0
	for _, name := range groups {
		kind, _ := metapb.GroupKind(name)
		rec := &logpb.GroupRecord{Name: name, Kind: kind}
		if name == metapb.MetadataGroup {
			for _, id := range ids[:min(mdRF, n)] {
				rec.Replicas = append(rec.Replicas, &logpb.Replica{Node: id, Voter: true})
			}
		} else {
			for t := range min(rf, n) {
				rec.Replicas = append(rec.Replicas, &logpb.Replica{Node: ids[(next+t)%n], Voter: true})
			}
			next = (next + min(rf, n)) % n
		}
		out = append(out, rec)
	}
	setRanges(out, metapb.EvenRanges)
	return out
}

// legacyDirectory is the directory of a cluster created before placement:
// every member hosts every group. Groups counted in a power of two get the
// ranges that route every key where it already is; the others keep
// routing by Shard.
func legacyDirectory(members, groups []string) []*logpb.GroupRecord {
	var out []*logpb.GroupRecord
	for _, name := range groups {
		kind, _ := metapb.GroupKind(name)
		rec := &logpb.GroupRecord{Name: name, Kind: kind}
		for _, id := range members {
			rec.Replicas = append(rec.Replicas, &logpb.Replica{Node: id, Voter: true})
		}
		out = append(out, rec)
	}
	setRanges(out, metapb.LegacyRanges)
	return out
}

// setRanges gives the data and offset groups of records their ranges, as
// ranges (n, name) lays them out for each kind.
func setRanges(records []*logpb.GroupRecord, ranges func(n int, name func(int) string) metapb.RangeMap) {
	for kind, name := range map[string]func(int) string{"data": metapb.DataGroup, "offset": metapb.OffsetGroup} {
		n := 0
		byName := map[string]*logpb.GroupRecord{}
		for _, rec := range records {
			if rec.Kind == kind {
				n++
				byName[rec.Name] = rec
			}
		}
		for _, r := range ranges(n, name) {
			if rec := byName[r.Group]; rec != nil {
				rec.Ranges = append(rec.Ranges, &logpb.HashRange{Lo: r.Lo, Hi: r.Hi, Version: r.Version})
			}
		}
	}
}

// hosts reports whether rec places a replica on node.
func hosts(rec *logpb.GroupRecord, node string) bool {
	return slices.ContainsFunc(rec.GetReplicas(), func(r *logpb.Replica) bool { return r.Node == node })
}
