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
const (
	prefixMeta     byte = 0x00
	prefixKV       byte = 0x01
	prefixOffset   byte = 0x02
	prefixCluster  byte = 0x03
	prefixUserMin  byte = 0x01
	prefixSentinel byte = 0xff // no key starts with it: the end of every range
)

var (
	keyApplied   = []byte{prefixMeta, 'a'}
	keyRestoring = []byte{prefixMeta, 'r'}
	keyClusterID = []byte{prefixCluster, 'c'}
	userStart    = []byte{prefixUserMin}
	userEnd      = []byte{prefixSentinel}
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
