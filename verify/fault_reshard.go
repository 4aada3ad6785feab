package verify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/metamq/meta/rpc/metapb"
)

// FaultReshard splits a data group online under load, near the keys the
// workload writes (as Jepsen's CockroachDB test splits near hot keys): at
// Inject the nemesis lists the KV keys, takes the most recently written
// ones (highest mod revision), picks one with the fault's Pick, and
// splits the data group whose range holds the key's route hash at a point
// just below that hash (PickReshard), through the public SplitGroup, so
// that the key and its neighbours move to the new group while clients
// write them. Inject returns once the split is recorded (it then runs in
// the background); Heal waits until no split is in progress
// (AwaitSplitsDone), failing with the phase it stopped in if one never
// finishes. Groups are never merged back: a schedule holds at most
// ScheduleOptions.MaxReshards reshard faults (default 2), and a nemesis
// refuses one (ErrTooManyGroups) once the cluster has MaxDataGroups data
// groups, so that runs reusing a cluster do not grow it without bound.
const FaultReshard FaultKind = "reshard"

// MaxDataGroups bounds the data groups reshard faults leave a cluster
// with: PickReshard refuses a split beyond it.
const MaxDataGroups = 8

// ErrTooManyGroups: a reshard fault on a cluster that already has
// MaxDataGroups data groups.
var ErrTooManyGroups = errors.New("verify: reshard: too many data groups")

// ReshardAdmin is the part of the public client the reshard fault needs.
type ReshardAdmin interface {
	List(ctx context.Context, req *metapb.ListRequest) (*metapb.ListResponse, error)
	ListGroups(ctx context.Context) (*metapb.ListGroupsResponse, error)
	SplitGroup(ctx context.Context, group string, at uint64) (*metapb.SplitGroupResponse, error)
}

// Reshard is the split a reshard fault chose.
type Reshard struct {
	// Key is the hot key the split is placed under; Hash its route hash.
	Key  string
	Hash uint32
	// Group is the data group split; At the split point: the new group
	// takes [At, Hi) of the range holding Hash, so Key moves.
	Group string
	At    uint64
}

// reshardHot is how many of the most recently written keys a reshard
// fault picks among; reshardBelow bounds how far below the key's hash
// the split point lies.
const (
	reshardHot   = 8
	reshardBelow = 1 << 16
)

// PickReshard chooses a split for a reshard fault, deterministically given
// pick and the cluster's keys and ranges: among the reshardHot KV keys
// with the highest mod revision (the ones written last), starting at
// pick, the first whose hash lies far enough above the low end of its
// range that a point just below it cuts the range in two. It refuses with
// ErrTooManyGroups once the directory has MaxDataGroups data groups, and
// fails when a split is already under way or no key fits.
func PickReshard(ctx context.Context, adm ReshardAdmin, pick uint64) (Reshard, error) {
	gs, err := adm.ListGroups(ctx)
	if err != nil {
		return Reshard{}, fmt.Errorf("verify: reshard: list groups: %w", err)
	}
	var ranges metapb.RangeMap
	data := 0
	for _, g := range gs.Groups {
		if g.Kind != "data" {
			continue
		}
		data++
		if g.SplitChild != "" {
			return Reshard{}, fmt.Errorf("verify: reshard: a split of %s is already under way (phase %s)", g.Group, g.SplitPhase)
		}
		for _, r := range g.Ranges {
			ranges = append(ranges, metapb.Range{Lo: r.Lo, Hi: r.Hi, Group: g.Group, Version: r.Version})
		}
	}
	if data >= MaxDataGroups {
		return Reshard{}, fmt.Errorf("%w: the cluster has %d, the bound is %d", ErrTooManyGroups, data, MaxDataGroups)
	}
	if ranges = ranges.Sorted(); ranges == nil {
		return Reshard{}, errors.New("verify: reshard: the data groups' ranges do not tile the hash space (a cluster routing by count cannot split)")
	}
	var kvs []*metapb.KeyValue
	for after := []byte(nil); ; {
		page, err := adm.List(ctx, &metapb.ListRequest{StartAfter: after, KeysOnly: true, Limit: 1000})
		if err != nil {
			return Reshard{}, fmt.Errorf("verify: reshard: list keys: %w", err)
		}
		kvs = append(kvs, page.Kvs...)
		if !page.More || len(page.Kvs) == 0 {
			break
		}
		after = page.Kvs[len(page.Kvs)-1].Key
	}
	// The last written first; ties (revisions of different groups) by key.
	slices.SortFunc(kvs, func(a, b *metapb.KeyValue) int {
		if c := cmp.Compare(b.ModRevision, a.ModRevision); c != 0 {
			return c
		}
		return strings.Compare(string(a.Key), string(b.Key))
	})
	hot := kvs[:min(len(kvs), reshardHot)]
	for i := range hot {
		kv := hot[(pick+uint64(i))%uint64(len(hot))]
		h := metapb.RouteHash(kv.Key)
		r, ok := ranges.Lookup(h)
		if !ok {
			continue
		}
		at := uint64(h) - min(reshardBelow, (uint64(h)-r.Lo)/2)
		if at <= r.Lo || at >= r.Hi {
			continue
		}
		return Reshard{Key: string(kv.Key), Hash: h, Group: r.Group, At: at}, nil
	}
	return Reshard{}, fmt.Errorf("verify: reshard: none of %d recently written keys (of %d) can be split off its range", len(hot), len(kvs))
}

// StartReshard picks a split (PickReshard) and starts it through
// SplitGroup; it returns once the split is recorded, with the new group.
func StartReshard(ctx context.Context, adm ReshardAdmin, pick uint64) (Reshard, string, error) {
	rs, err := PickReshard(ctx, adm, pick)
	if err != nil {
		return rs, "", err
	}
	resp, err := adm.SplitGroup(ctx, rs.Group, rs.At)
	if err != nil {
		return rs, "", fmt.Errorf("verify: reshard: split %s at %#x (below %q, hash %#x): %w", rs.Group, rs.At, rs.Key, rs.Hash, err)
	}
	return rs, resp.Child, nil
}

// AwaitSplitsDone waits until the directory shows no split under way and
// every group active (or deleted: an aborted split's child keeps its
// record), polling ListGroups every 200ms, for at most limit (and ctx).
// Failing, it names the splits still under way and their phases.
func AwaitSplitsDone(ctx context.Context, adm ReshardAdmin, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	busy, _ := settle(ctx, 200*time.Millisecond, func() ([]string, error) {
		gs, err := adm.ListGroups(ctx)
		if err != nil {
			return nil, err
		}
		var busy []string
		for _, g := range gs.Groups {
			switch {
			case g.SplitChild != "":
				busy = append(busy, fmt.Sprintf("%s splitting into %s (phase %s)", g.Group, g.SplitChild, g.SplitPhase))
			case g.State != "active" && g.State != "deleting":
				busy = append(busy, fmt.Sprintf("%s is %s", g.Group, g.State))
			}
		}
		return busy, nil
	})
	if len(busy) > 0 {
		return fmt.Errorf("verify: reshard: splits not done within %s: %s", limit, strings.Join(busy, "; "))
	}
	return nil
}
