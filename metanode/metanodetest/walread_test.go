package metanodetest

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
)

// walRecord encodes one full record of RocksDB's log format.
func walRecord(payload []byte) []byte {
	h := make([]byte, 7, 7+len(payload))
	binary.LittleEndian.PutUint16(h[4:6], uint16(len(payload)))
	h[6] = 1 // full record
	rec := append(h, payload...)
	c := crc32.Checksum(rec[6:], castagnoli)
	binary.LittleEndian.PutUint32(rec[0:4], (c>>15|c<<17)+0xa282ead8)
	return rec
}

// walLog lays records of size bytes out in 32 KiB blocks, each record
// kept to one block (the rest of a block zero padding; RocksDB's writer
// would split it, which the reader does not need here), and returns the
// log and the records' offsets.
func walLog(records, size int) ([]byte, []int) {
	var log []byte
	var offs []int
	for i := range records {
		rec := walRecord(bytes.Repeat([]byte{byte(i + 1)}, size))
		if left := 32<<10 - len(log)%(32<<10); left < len(rec) {
			log = append(log, make([]byte, left)...)
		}
		offs = append(offs, len(log))
		log = append(log, rec...)
	}
	return log, offs
}

// walRecoveryError tells a torn tail (dropped by recovery) from damage that
// fails it, as RocksDB's reader in TolerateCorruptedTailRecords mode does.
func TestWALRecoveryError(t *testing.T) {
	const size = 1000
	one, offs := walLog(10, size) // one block: the last
	two, _ := walLog(50, size)    // two blocks
	second := offs[1]
	inSecondBlock := 32 << 10 // the second block's first record
	for _, c := range []struct {
		name  string
		log   []byte
		flip  int // the offset of 4 inverted bytes, or -1
		fails bool
	}{
		{"clean, one block", one, -1, false},
		{"clean, two blocks", two, -1, false},
		{"payload of the last block", one, second + 100, true},
		{"header in the last block, swallowing the records after it", one, second + 3, true},
		{"length in an earlier block", two, second + 3, true},
		{"payload in an earlier block", two, second + 100, true},
		{"header in the last of two blocks, swallowing the rest", two, inSecondBlock + 3, true},
		{"the last record cut short (a torn tail)", one[:len(one)-size/2], -1, false},
		{"the last record's header cut short (a torn tail)", one[:offs[9]+3], -1, false},
	} {
		log := bytes.Clone(c.log)
		if c.flip >= 0 {
			for i := range 4 {
				log[c.flip+i] ^= 0xff
			}
		}
		path := filepath.Join(t.TempDir(), "000001.log")
		if err := os.WriteFile(path, log, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := walRecoveryError(path); (err != nil) != c.fails {
			t.Errorf("%s: got %v, want failing %v", c.name, err, c.fails)
		}
	}
}
