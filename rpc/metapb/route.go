package metapb

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// Group names. Every node hosts every group:
//
//	metadata-0            cluster and broker metadata, the controller
//	offset-0 .. offset-k-1 consumer offsets
//	data-0 .. data-m-1     KV business data
//
// k (offset groups) and m (data groups) are fixed when a cluster is created.
const (
	MetadataGroup = "metadata-0"
	offsetPrefix  = "offset-"
	dataPrefix    = "data-"
)

// OffsetGroup returns the name of offset group i.
func OffsetGroup(i int) string { return offsetPrefix + strconv.Itoa(i) }

// DataGroup returns the name of data group i.
func DataGroup(i int) string { return dataPrefix + strconv.Itoa(i) }

// Groups lists every group of a cluster with k offset and m data groups, in
// a fixed order: metadata first, then offsets, then data.
func Groups(k, m int) []string {
	out := []string{MetadataGroup}
	for i := 0; i < k; i++ {
		out = append(out, OffsetGroup(i))
	}
	for i := 0; i < m; i++ {
		out = append(out, DataGroup(i))
	}
	return out
}

// ValidGroup reports whether name is a group of a cluster with k offset and
// m data groups.
func ValidGroup(name string, k, m int) bool {
	if name == MetadataGroup {
		return true
	}
	for _, g := range []struct {
		prefix string
		n      int
	}{{offsetPrefix, k}, {dataPrefix, m}} {
		if rest, ok := strings.CutPrefix(name, g.prefix); ok {
			i, err := strconv.Atoi(rest)
			return err == nil && i >= 0 && i < g.n && strconv.Itoa(i) == rest
		}
	}
	return false
}

// Shard is the routing function, a stable contract between servers and
// clients: the 32-bit FNV-1a hash of the routing key, modulo the number of
// groups. The routing key is the whole key for KV, the consumer group name
// for offsets (so one consumer group lives in one offset group), and the
// client id for MQTT sessions and wills. It never changes for a cluster
// because the group counts never change.
func Shard(routingKey []byte, groups int) int {
	if groups <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write(routingKey)
	return int(h.Sum32() % uint32(groups))
}

// DataGroupFor returns the data group that holds a KV key.
func DataGroupFor(key []byte, m int) string { return DataGroup(Shard(key, m)) }

// OffsetGroupFor returns the offset group that holds a consumer group.
func OffsetGroupFor(consumerGroup string, k int) string {
	return OffsetGroup(Shard([]byte(consumerGroup), k))
}

// GroupKind returns "metadata", "offset" or "data" for a group name.
func GroupKind(name string) (string, error) {
	switch {
	case name == MetadataGroup:
		return "metadata", nil
	case strings.HasPrefix(name, offsetPrefix):
		return "offset", nil
	case strings.HasPrefix(name, dataPrefix):
		return "data", nil
	}
	return "", fmt.Errorf("metapb: unknown group %q", name)
}
