package metapb

import "testing"

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
