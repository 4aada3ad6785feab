package metapb

import (
	"cmp"
	"errors"
	"fmt"
	"hash/fnv"
	"math/bits"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Routing by range. A group of kind data or offset owns one or more ranges
// of the 32-bit route hash space: RouteHash is the FNV-1a hash of the
// routing key (the same hash Shard takes modulo the group count) with its
// bits reversed, so that taking the top b bits of the route hash selects
// the same group as the low b bits of FNV-1a, that is FNV-1a modulo 2^b: a
// cluster created with a power-of-two count keeps its data where it is
// when it moves to ranges (LegacyRanges), and splitting a range at its
// middle is one more bit of the hash. Ranges are half open, [Lo, Hi), with
// Hi up to 1<<32.
//
// The map only directs requests: which group serves a key is decided by
// each group's own log (the ranges it owns, checked when an entry is
// applied and, for reads, in the same view as the data), so a stale map
// costs a definite WRONG_GROUP and a retry, never a wrong answer.

// HashSpace is the size of the route hash space.
const HashSpace = uint64(1) << 32

// RouteHash is the route hash of a routing key.
func RouteHash(routingKey []byte) uint32 {
	h := fnv.New32a()
	_, _ = h.Write(routingKey)
	return bits.Reverse32(h.Sum32())
}

// Range is one range of a group: [Lo, Hi) of the route hash space, at a
// version that rises every time the range changes hands.
type Range struct {
	Lo, Hi  uint64
	Group   string
	Version uint64
}

// Contains reports whether the range holds hash h.
func (r Range) Contains(h uint32) bool { return uint64(h) >= r.Lo && uint64(h) < r.Hi }

func (r Range) String() string { return fmt.Sprintf("%s[%#x,%#x)@%d", r.Group, r.Lo, r.Hi, r.Version) }

// RangeMap is the ranges of one kind of group, sorted by Lo, tiling the
// hash space exactly once.
type RangeMap []Range

// Lookup returns the range holding h.
func (m RangeMap) Lookup(h uint32) (Range, bool) {
	i := sort.Search(len(m), func(i int) bool { return m[i].Hi > uint64(h) })
	if i == len(m) || !m[i].Contains(h) {
		return Range{}, false
	}
	return m[i], true
}

// Sorted returns the map sorted by Lo when it tiles the hash space, nil
// otherwise (and for an empty map).
func (m RangeMap) Sorted() RangeMap {
	if len(m) == 0 {
		return nil
	}
	m = slices.Clone(m)
	slices.SortFunc(m, func(a, b Range) int { return cmp.Compare(a.Lo, b.Lo) })
	if m.Check() != nil {
		return nil
	}
	return m
}

// Check reports whether the map tiles the hash space exactly once.
func (m RangeMap) Check() error {
	next := uint64(0)
	for _, r := range m {
		if r.Lo != next || r.Hi <= r.Lo {
			return fmt.Errorf("metapb: ranges do not tile the hash space at %#x: %v", next, r)
		}
		next = r.Hi
	}
	if next != HashSpace {
		return fmt.Errorf("metapb: ranges end at %#x, not %#x", next, HashSpace)
	}
	return nil
}

// LegacyRanges returns, for n groups with names name(0..n-1) routed by
// Shard (FNV-1a modulo n), the ranges that route every key to the same
// group, when n is a power of two; nil otherwise (those clusters keep
// routing by Shard and cannot split).
func LegacyRanges(n int, name func(int) string) RangeMap {
	if n < 1 || n&(n-1) != 0 {
		return nil
	}
	b := bits.TrailingZeros(uint(n))
	width := HashSpace / uint64(n)
	out := make(RangeMap, n)
	for i := range n {
		g := int(bits.Reverse32(uint32(i)) >> (32 - b))
		if b == 0 {
			g = 0
		}
		out[i] = Range{Lo: uint64(i) * width, Hi: uint64(i+1) * width, Group: name(g), Version: 1}
	}
	return out
}

// EvenRanges returns n ranges of (nearly) equal width for groups
// name(0..n-1), in order: the ranges of a new cluster's groups.
func EvenRanges(n int, name func(int) string) RangeMap {
	if pow := LegacyRanges(n, name); pow != nil {
		return pow // power of two: the same as routing by Shard
	}
	out := make(RangeMap, n)
	for i := range n {
		out[i] = Range{Lo: uint64(i) * HashSpace / uint64(n), Hi: uint64(i+1) * HashSpace / uint64(n), Group: name(i), Version: 1}
	}
	return out
}

// Router routes routing keys to groups: by the ranges of a directory, or
// by Shard over the group counts in a cluster without ranges.
type Router struct {
	// K and M are the offset and data group counts (for Shard).
	K, M int
	// Offset and Data are the range maps; nil to route by Shard.
	Offset, Data RangeMap
	// Version is the directory version the maps come from (0: none).
	Version uint64
}

// DataGroup returns the data group of a routing key (a KV key, a client
// id, a topic).
func (r *Router) DataGroup(key []byte) string {
	if r.Data != nil {
		if rg, ok := r.Data.Lookup(RouteHash(key)); ok {
			return rg.Group
		}
	}
	return DataGroup(Shard(key, max(r.M, 1)))
}

// OffsetGroup returns the offset group of a consumer group.
func (r *Router) OffsetGroup(consumerGroup string) string {
	if r.Offset != nil {
		if rg, ok := r.Offset.Lookup(RouteHash([]byte(consumerGroup))); ok {
			return rg.Group
		}
	}
	return OffsetGroup(Shard([]byte(consumerGroup), max(r.K, 1)))
}

// DataRange returns the range of a data routing key, when routing by range.
func (r *Router) DataRange(key []byte) (Range, bool) { return r.Data.Lookup(RouteHash(key)) }

// The route a client declares, and the ranges a WRONG_GROUP answer
// carries. A client that routes a write by its own copy of the map sends,
// as gRPC request metadata, the group it routed the call to (MDRouteGroup)
// and the directory version of its map (MDRouteVersion). A node whose map
// routes one of the call's routing keys elsewhere refuses the whole call
// before anything is proposed (definitely not applied):
//
//   - WRONG_GROUP when the client's map is older than the node's. Its
//     ErrorInfo metadata holds group (the group the client named),
//     range_version (the node's directory version) and ranges: the node's
//     whole map of the group's kind, as FormatRanges writes it. The client
//     takes that map (when its version is above its own), routes the call
//     again (a batch split by the new map) and sends it at once, without
//     reading the directory.
//   - ROUTE_AHEAD when the client's map is newer than the node's: retry
//     (on another node, or shortly).
//
// A call without the metadata (a pinned client, another node forwarding)
// is routed by the node's map, as every call was before.
const (
	MDRouteGroup   = "meta-route-group"
	MDRouteVersion = "meta-route-version"
	// MetaRanges is the ErrorInfo metadata key of a WRONG_GROUP's ranges.
	MetaRanges = "ranges"
)

// FormatRanges writes a map as ErrorInfo metadata: the ranges in order,
// separated by ",", each "group:lo:hi:version" in hexadecimal (lo and hi)
// and decimal (version). ParseRanges reads it back.
func FormatRanges(m RangeMap) string {
	var b strings.Builder
	for i, r := range m {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s:%x:%x:%d", r.Group, r.Lo, r.Hi, r.Version)
	}
	return b.String()
}

// ParseRanges reads what FormatRanges wrote; the map must tile the hash
// space (a map that does not is refused, never half taken).
func ParseRanges(s string) (RangeMap, error) {
	var m RangeMap
	for _, f := range strings.Split(s, ",") {
		parts := strings.Split(f, ":")
		if len(parts) != 4 || parts[0] == "" {
			return nil, fmt.Errorf("metapb: ranges: %q is not group:lo:hi:version", f)
		}
		lo, err1 := strconv.ParseUint(parts[1], 16, 64)
		hi, err2 := strconv.ParseUint(parts[2], 16, 64)
		v, err3 := strconv.ParseUint(parts[3], 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("metapb: ranges: %q: %w", f, err)
		}
		m = append(m, Range{Lo: lo, Hi: hi, Group: parts[0], Version: v})
	}
	if err := m.Check(); err != nil {
		return nil, err
	}
	return m, nil
}

// Find returns the group named name in the list, nil if it holds none.
func (r *ListGroupsResponse) Find(name string) *GroupInfo {
	for _, g := range r.GetGroups() {
		if g.GetGroup() == name {
			return g
		}
	}
	return nil
}
