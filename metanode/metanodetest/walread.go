package metanodetest

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"

	"github.com/metamq/meta/metanode"
)

// walRecoveryError reads the RocksDB write-ahead log at path as recovery
// does in the mode the nodes open with (TolerateCorruptedTailRecords,
// rocks/options.go) and returns what fails it: a record whose checksum
// does not match, or a record running past its block before the log's
// last block. It returns nil when recovery reads the log through, or ends
// it at what looks like the torn tail a crash leaves (a header cut short,
// or a record running past the end of the file, in the log's last block):
// RocksDB drops such a tail without an error. Damage that only reads as
// one (a record's length made to run past the end) fails meta's Open all
// the same (metanode.DamagedWALTail), so it is returned too when that check
// finds it.
//
// The format is RocksDB's log format (db/log_format.h, db/log_reader.cc):
// 32 KiB blocks of records, each a header (masked CRC-32C of the type and
// what follows, 2-byte length, type; a recyclable record's type adds a
// 4-byte log number) and the payload; fewer than a header's bytes at a
// block's end are padding.
func walRecoveryError(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	const (
		block      = 32 << 10
		header     = 7
		recyclable = 11
	)
	for start := 0; start < len(data); start += block {
		buf := data[start:min(start+block, len(data))]
		last := len(buf) < block // RocksDB's eof: a read shorter than a block
		for off := start; len(buf) > 0; {
			if len(buf) < header {
				break // padding, or a header cut short at the end
			}
			n, typ := int(binary.LittleEndian.Uint16(buf[4:6])), buf[6]
			size := header
			if typ >= 5 && typ <= 8 {
				size = recyclable
				if len(buf) < size {
					break
				}
			}
			if size+n > len(buf) {
				if last {
					// Reads as a torn tail, which RocksDB drops; meta's
					// Open refuses it when it is damage instead.
					if why := metanode.DamagedWALTail(data); why != "" {
						return fmt.Errorf("record at %d: %s", off, why)
					}
					return nil
				}
				return fmt.Errorf("record at %d: length %d runs past its block", off, n)
			}
			if typ == 0 && n == 0 {
				break // preallocated zeros: the rest of the block is skipped
			}
			want := binary.LittleEndian.Uint32(buf[0:4]) - 0xa282ead8
			want = want>>17 | want<<15
			if got := crc32.Checksum(buf[6:size+n], castagnoli); got != want {
				return fmt.Errorf("record at %d: checksum mismatch", off)
			}
			buf, off = buf[size+n:], off+size+n
		}
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)
