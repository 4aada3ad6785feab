package metanode

import (
	"strings"
	"testing"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
)

// restorePlan: a backup's groups as a new cluster of its counts has them
// restore as that cluster (no restored groups); split groups restore with
// their own ranges; a backup that does not tile the hash space, that was
// taken during a split, or that routes by count is refused, naming why.
func TestRestorePlan(t *testing.T) {
	hr := func(lo, hi, v uint64) *logpb.HashRange { return &logpb.HashRange{Lo: lo, Hi: hi, Version: v} }
	own := func(rs ...*logpb.HashRange) *logpb.Ownership { return &logpb.Ownership{Owned: rs} }
	const half, all = 1 << 31, 1 << 32
	type backup map[string]*logpb.Ownership
	for _, tc := range []struct {
		name     string
		b        backup
		counts   [2]int
		restored []string // names with ranges, "" when none
		err      string
	}{
		{name: "as created", b: backup{"metadata-0": nil, "offset-0": own(hr(0, all, 1)), "data-0": own(hr(0, half, 1)), "data-1": own(hr(half, all, 1))},
			counts: [2]int{1, 2}},
		{name: "no ownership records (before ranges)", b: backup{"metadata-0": nil, "offset-0": nil, "data-0": nil},
			counts: [2]int{1, 1}},
		{name: "split", b: backup{"metadata-0": nil, "offset-0": own(hr(0, all, 1)), "data-0": own(hr(0, half, 2)), "data-1": own(hr(half, all, 2))},
			counts: [2]int{1, 2}, restored: []string{"offset-0[0x0,0x100000000)@1", "data-0[0x0,0x80000000)@2", "data-1[0x80000000,0x100000000)@2"}},
		{name: "split, names a new cluster lacks", b: backup{"metadata-0": nil, "offset-0": own(hr(0, all, 1)), "data-0": own(hr(0, half, 2)), "data-2": own(hr(half, all, 2))},
			counts: [2]int{1, 2}, restored: []string{"offset-0[0x0,0x100000000)@1", "data-0[0x0,0x80000000)@2", "data-2[0x80000000,0x100000000)@2"}},
		{name: "a gap", b: backup{"metadata-0": nil, "offset-0": own(hr(0, all, 1)), "data-0": own(hr(0, half, 2)), "data-2": own(hr(half+1, all, 2))},
			err: "data groups do not own the whole hash space"},
		{name: "an overlap", b: backup{"metadata-0": nil, "offset-0": own(hr(0, all, 1)), "data-0": own(hr(0, all, 1)), "data-2": own(hr(half, all, 2))},
			err: "data groups do not own the whole hash space"},
		{name: "taken during a split", b: backup{"metadata-0": nil, "offset-0": own(hr(0, all, 1)),
			"data-0": {Owned: []*logpb.HashRange{hr(0, half, 1)}, Moving: []*logpb.MovingRange{{Range: hr(half, all, 2)}}}, "data-1": {Ingesting: true}},
			err: "was splitting when the backup was taken"},
		{name: "routing by count", b: backup{"metadata-0": nil, "offset-0": {Legacy: true}, "data-0": own(hr(0, all, 1))},
			err: "routes keys by group count"},
		{name: "no metadata-0", b: backup{"offset-0": own(hr(0, all, 1)), "data-0": own(hr(0, all, 1))},
			err: "a cluster has metadata-0"},
		{name: "no offset group", b: backup{"metadata-0": nil, "data-0": own(hr(0, all, 1))},
			err: "a cluster has metadata-0"},
		{name: "some without ranges, not a new cluster's", b: backup{"metadata-0": nil, "offset-0": nil, "data-0": own(hr(0, half, 2)), "data-2": nil},
			err: "some without ranges"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var groups []RestoreGroup
			for name := range tc.b {
				groups = append(groups, RestoreGroup{Name: name})
			}
			offsets, datas, restored, err := restorePlan(groups, tc.b)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if offsets != tc.counts[0] || datas != tc.counts[1] {
				t.Fatalf("counts %d offset, %d data; want %v", offsets, datas, tc.counts)
			}
			var got []string
			for _, rec := range restored {
				got = append(got, rangesOf(rec))
			}
			if strings.Join(got, " ") != strings.Join(tc.restored, " ") {
				t.Fatalf("restored %v, want %v", got, tc.restored)
			}
		})
	}
}

func rangesOf(rec *logpb.GroupRecord) string {
	var b strings.Builder
	for _, r := range rec.Ranges {
		b.WriteString(metapb.Range{Group: rec.Name, Lo: r.Lo, Hi: r.Hi, Version: r.Version}.String())
	}
	return b.String()
}
