package sm

import (
	"encoding/binary"
	"errors"
)

// Key layout of a group's data column family. The first byte says what a
// key holds; everything a snapshot carries and the state hash covers is at
// or above prefixUserMin.
//
//	0x00 'a'                      AppliedState (index, term, revision)
//	0x00 'r'                      restore in progress (present only while a
//	                              snapshot is being restored)
//	0x01 <key>                    data: KV key -> logpb.KV
//	0x02 <group> <topic> <part>   offset: logpb.Offset; group and topic are
//	                              uvarint-length-prefixed, partition is a
//	                              4-byte big-endian uint32 (partitions >= 0)
//	0x03 'c'                      metadata: ClusterInit record
//	0x03 'm' <id>                 metadata: member id -> logpb.MemberPut
//	0x03 'g' <name>               metadata: directory: group -> logpb.GroupRecord
//	0x03 'v'                      metadata: directory version (uint64): rises
//	                              with every change of members or groups
//	0x03 'l'                      metadata: cluster version (uint64; absent:
//	                              the base level; version.go)
//	0x04 <kind> <name>            metadata: resource -> logpb.Resource
//	0x05 <client id>              data: MQTT session -> logpb.Session
//	0x06 <at> <client id>         data: session expiry index (empty value)
//	0x07 <client id>              data: will -> logpb.Will
//	0x08 <at> <client id>         data: will timer index: armed wills at
//	                              due time, claimed wills at claim expiry
//	0x09 <client id>              data: due wills (empty value)
//	0x0a <topic>                  data: retained message -> logpb.Retained
//	0x0b <id>                     data: lease -> logpb.Lease
//	0x0c <at> <id>                data: lease expiry index (empty value)
//	0x0d <id> <key>               data: keys attached to a lease (empty)
//	0x0e <revision> <n>           change log: logpb.Event
//	0x0f 'c'                      change log: compacted revision (uint64)
//	0x10 <broker id>              controller: broker -> logpb.Broker
//	0x11 <connector>              controller: assignment ->
//	                              logpb.ConnectorAssignment
//	0x12 'o'                      data, offset: the ranges the group owns
//	                              (logpb.Ownership; ownership.go)
//	0x12 'c'                      data, offset: how far a split's copy into
//	                              the new group has gone
//	                              (logpb.RangeCopyState; split.go)
//	0x12 'd' <lo>                 data, offset: where the parent's drop of
//	                              the released range from <lo> stopped
//	0x13 <stored key>             data, offset: a key of a range a split
//	                              tracks, changed since its RangeTrack
//	                              (value: the index of the last change)
//
// <at> is a Unix time in nanoseconds and <id> a lease id, both 8-byte
// big-endian (times and ids are never negative), so indexes sort by time;
// <revision> is 8 and <n> 4 bytes big-endian.
const (
	prefixMeta       byte = 0x00
	prefixKV         byte = 0x01
	prefixOffset     byte = 0x02
	prefixCluster    byte = 0x03
	prefixResource   byte = 0x04
	prefixSession    byte = 0x05
	prefixSessionExp byte = 0x06
	prefixWill       byte = 0x07
	prefixWillTimer  byte = 0x08
	prefixWillDue    byte = 0x09
	prefixRetained   byte = 0x0a
	prefixLease      byte = 0x0b
	prefixLeaseExp   byte = 0x0c
	prefixLeaseKeys  byte = 0x0d
	prefixEvent      byte = 0x0e
	prefixCompact    byte = 0x0f
	prefixBroker     byte = 0x10
	prefixAssignment byte = 0x11
	prefixOwnership  byte = 0x12
	prefixSplitMark  byte = 0x13
	prefixUserMin    byte = 0x01
	prefixSentinel   byte = 0xff // no key starts with it: the end of every range
)

var (
	keyCompact   = []byte{prefixCompact, 'c'}
	keyApplied   = []byte{prefixMeta, 'a'}
	keyRestoring = []byte{prefixMeta, 'r'}
	keyFenced    = []byte{prefixMeta, 'f'}
	keyClusterID = []byte{prefixCluster, 'c'}
	keyDirVer    = []byte{prefixCluster, 'v'}
	// keyClusterVersion: see version.go.
	keyClusterVersion = []byte{prefixCluster, 'l'}
	keyOwnership      = []byte{prefixOwnership, 'o'}
	userStart         = []byte{prefixUserMin}
	userEnd           = []byte{prefixSentinel}
)

func kvKey(k []byte) []byte {
	out := make([]byte, 0, 1+len(k))
	return append(append(out, prefixKV), k...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func offsetGroupPrefix(group string) []byte {
	return appendString([]byte{prefixOffset}, group)
}

func offsetKey(group, topic string, partition int32) []byte {
	b := appendString(offsetGroupPrefix(group), topic)
	return binary.BigEndian.AppendUint32(b, uint32(partition))
}

var errBadKey = errors.New("sm: malformed stored key")

// parseOffsetKey is the inverse of offsetKey.
func parseOffsetKey(k []byte) (group, topic string, partition int32, err error) {
	if len(k) == 0 || k[0] != prefixOffset {
		return "", "", 0, errBadKey
	}
	rest := k[1:]
	readString := func() (string, bool) {
		n, w := binary.Uvarint(rest)
		if w <= 0 || uint64(len(rest)-w) < n {
			return "", false
		}
		s := string(rest[w : w+int(n)])
		rest = rest[w+int(n):]
		return s, true
	}
	var ok bool
	if group, ok = readString(); !ok {
		return "", "", 0, errBadKey
	}
	if topic, ok = readString(); !ok || len(rest) != 4 {
		return "", "", 0, errBadKey
	}
	return group, topic, int32(binary.BigEndian.Uint32(rest)), nil
}

func groupKey(name string) []byte { return append([]byte{prefixCluster, 'g'}, name...) }

func memberKey(id string) []byte {
	return append([]byte{prefixCluster, 'm'}, id...)
}

// prefixEnd returns the smallest key greater than every key with prefix p,
// or nil when there is none (p is all 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func prefixed(p byte, parts ...[]byte) []byte {
	n := 1
	for _, x := range parts {
		n += len(x)
	}
	out := make([]byte, 0, n)
	out = append(out, p)
	for _, x := range parts {
		out = append(out, x...)
	}
	return out
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// storedU64 decodes a counter stored by be64, taking what a Get returned:
// 0 when the key is absent or holds anything but 8 bytes.
func storedU64(v []byte, ok bool, err error) (uint64, error) {
	if err != nil || !ok || len(v) != 8 {
		return 0, err
	}
	return binary.BigEndian.Uint64(v), nil
}

// timerKey is an index entry ordered by time.
func timerKey(p byte, at int64, id []byte) []byte {
	return prefixed(p, be64(uint64(max(at, 0))), id)
}

// parseTimerKey returns the time and id of a timer index key.
func parseTimerKey(k []byte) (int64, []byte, error) {
	if len(k) < 9 {
		return 0, nil, errBadKey
	}
	return int64(binary.BigEndian.Uint64(k[1:9])), k[9:], nil
}

func resourceKey(kind int32, name string) []byte {
	return prefixed(prefixResource, []byte{byte(kind)}, []byte(name))
}

func leaseKey(id int64) []byte { return prefixed(prefixLease, be64(uint64(id))) }

func leaseKeysKey(id int64, key []byte) []byte {
	return prefixed(prefixLeaseKeys, be64(uint64(id)), key)
}

func eventKey(rev uint64, n uint32) []byte {
	return binary.BigEndian.AppendUint32(prefixed(prefixEvent, be64(rev)), n)
}
