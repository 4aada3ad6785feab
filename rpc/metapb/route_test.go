package metapb

import (
	"fmt"
	"testing"
)

// The routing function is a contract between servers, clients and the data
// on disk: a cluster's keys stay in the groups they were written to. These
// values were computed once and must never change.
func TestRoutingIsStable(t *testing.T) {
	cases := []struct {
		key    string
		groups int
		want   int
	}{
		{"a", 1, 0},
		{"a", 2, 0},
		{"a", 3, 1},
		{"orders", 4, golden("orders", 4)},
		{"client-0000000042", 8, golden("client-0000000042", 8)},
		{"", 5, golden("", 5)},
	}
	for _, c := range cases {
		if got := Shard([]byte(c.key), c.groups); got != c.want {
			t.Errorf("Shard(%q, %d) = %d, want %d", c.key, c.groups, got, c.want)
		}
	}
}

// golden is FNV-1a 32 written out longhand, independent of hash/fnv.
func golden(key string, groups int) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % uint32(groups))
}

func TestGroupNames(t *testing.T) {
	got := Groups(2, 3)
	want := []string{"metadata-0", "offset-0", "offset-1", "data-0", "data-1", "data-2"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] || !ValidGroup(want[i], 2, 3) {
			t.Fatalf("got %v, want %v (all valid)", got, want)
		}
	}
	for _, bad := range []string{"data-3", "offset-01", "data--1", "metadata-1", "x"} {
		if ValidGroup(bad, 2, 3) {
			t.Errorf("ValidGroup(%q) = true", bad)
		}
	}
	if DataGroupFor([]byte("a"), 3) != DataGroup(1) || OffsetGroupFor("a", 3) != OffsetGroup(1) {
		t.Fatal("group-for helpers disagree with Shard")
	}
}

// With a power-of-two count, routing by range over the reversed hash picks
// the same group as Shard for every key: an existing cluster's data stays
// where it is.
func TestLegacyRangesMatchShard(t *testing.T) {
	for _, n := range []int{1, 2, 4, 8, 64} {
		m := LegacyRanges(n, DataGroup)
		if err := m.Check(); err != nil {
			t.Fatal(err)
		}
		for i := range 5000 {
			k := []byte(fmt.Sprintf("key-%d", i))
			r, ok := m.Lookup(RouteHash(k))
			if !ok || r.Group != DataGroupFor(k, n) {
				t.Fatalf("n=%d key %s: range %v, Shard says %s", n, k, r, DataGroupFor(k, n))
			}
		}
	}
	if LegacyRanges(12, DataGroup) != nil {
		t.Fatal("12 groups are not a power of two: no legacy ranges")
	}
	even := EvenRanges(12, DataGroup)
	if err := even.Check(); err != nil || len(even) != 12 {
		t.Fatalf("even ranges of 12: %v, %v", even, err)
	}
}

func TestListGroupsFind(t *testing.T) {
	gs := &ListGroupsResponse{Groups: []*GroupInfo{{Group: "data-0"}, {Group: "data-1", SplitChild: "x"}}}
	if g := gs.Find("data-1"); g == nil || g.SplitChild != "x" {
		t.Fatalf("Find(data-1) = %v", g)
	}
	if g := gs.Find("data-2"); g != nil {
		t.Fatalf("Find(data-2) = %v, want nil", g)
	}
	if g := (*ListGroupsResponse)(nil).Find("data-0"); g != nil {
		t.Fatalf("Find on nil = %v", g)
	}
}
