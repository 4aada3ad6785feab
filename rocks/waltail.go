package rocks

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// A write-ahead log whose last record runs past the end of its file is
// what a crash leaves when it cuts a write short, before its sync
// returned (never acknowledged): RocksDB's recovery mode drops that
// record and opens (options.go). But a record whose length field is
// damaged (a flipped bit that makes it larger) runs past the end too, and
// RocksDB drops it the same way, with every record after it: writes that
// were synced and acknowledged (raft log entries, a term or a vote)
// vanish with no error. DamagedWALTail tells the two apart before RocksDB
// reads the logs. What a cut record leaves is a prefix of its payload,
// which its checksum (over the whole payload) does not match, and nothing
// after it. Damage shows one of two ways: the record is whole, its
// checksum matching some prefix of the bytes there (its type byte may be
// damaged too: each record type is tried); or a whole record, its own
// checksum matching, lies inside what the damaged one claims (the records
// it swallowed), when the checksum field is damaged as well. Such a log
// fails Open with ErrCorruptFiles, as damage anywhere else in a log does.
// A cut record is taken for damage only if its bytes happen to match a
// checksum: about one chance in 2^32 per byte, or a client value that
// holds a whole log record of its own.
//
// The log format (RocksDB's db/log_format.h): 32 KiB blocks of physical
// records, each a 7-byte header (a masked CRC-32C of the type byte and the
// payload, little-endian; the payload's length, 2 bytes little-endian; the
// type) and the payload; fewer than 7 bytes left in a block are padding.
// Only the legacy record types are read (full, first, middle, last);
// another type (recyclable logs, compression records, which meta does not
// turn on) ends the check with no verdict, except in the record that runs
// past the end.
const (
	walBlockBytes  = 32 << 10
	walHeaderBytes = 7
	walLastType    = 4
	walCRCMaskADD  = 0xa282ead8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checkWALTails checks the last record of every write-ahead log in dir.
func checkWALTails(dir string) error {
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		return fmt.Errorf("rocks: list write-ahead logs: %w", err)
	}
	for _, f := range logs {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("rocks: read write-ahead log: %w", err)
		}
		if why := DamagedWALTail(b); why != "" {
			return fmt.Errorf("rocks: open %s: %w: write-ahead log %s: %s", dir, ErrCorruptFiles, filepath.Base(f), why)
		}
	}
	return nil
}

// DamagedWALTail walks a write-ahead log's physical records and, for a
// record that runs past the end of the log in its last block (which
// RocksDB drops as a write cut short), says why it is damage instead
// (empty: it may be a cut, or no record runs past the end).
func DamagedWALTail(b []byte) string {
	off := 0
	for off+walHeaderBytes <= len(b) {
		left := walBlockBytes - off%walBlockBytes
		if left < walHeaderBytes {
			off += left
			continue
		}
		n := int(binary.LittleEndian.Uint16(b[off+4:]))
		typ := b[off+6]
		end := off + walHeaderBytes + n
		switch {
		case end > len(b) && len(b)-off <= left:
			return pastTheEnd(b, off, n)
		case typ == 0 && n == 0:
			// Zeros (space allocated ahead of the writes): RocksDB skips
			// the rest of the block.
			off += left
			continue
		case typ > walLastType || end > len(b):
			return "" // a format this check does not read, or one RocksDB refuses
		}
		off = end
	}
	return ""
}

// pastTheEnd looks for damage in the record at off, whose length n runs
// past the end of the log.
func pastTheEnd(b []byte, off, n int) string {
	payload := b[off+walHeaderBytes:]
	want := walUnmask(binary.LittleEndian.Uint32(b[off:]))
	for typ := byte(1); typ <= walLastType; typ++ {
		crc := crc32.Update(0, castagnoli, []byte{typ})
		for l := 0; ; l++ {
			if crc == want {
				return fmt.Sprintf("the record at offset %d says it holds %d bytes, past the end of the log, but it is whole at %d bytes (its checksum matches): its header is damaged, not cut short by a crash", off, n, l)
			}
			if l == len(payload) {
				break
			}
			crc = crc32.Update(crc, castagnoli, payload[l:l+1])
		}
	}
	for q := 0; q+walHeaderBytes <= len(payload); q++ {
		h := payload[q:]
		m, typ := int(binary.LittleEndian.Uint16(h[4:])), h[6]
		if typ == 0 || typ > walLastType || walHeaderBytes+m > len(h) {
			continue
		}
		if crc32.Checksum(h[6:walHeaderBytes+m], castagnoli) == walUnmask(binary.LittleEndian.Uint32(h)) {
			return fmt.Sprintf("the record at offset %d says it holds %d bytes, past the end of the log, but a whole record lies inside them at offset %d: its header is damaged, not cut short by a crash", off, n, off+walHeaderBytes+q)
		}
	}
	return ""
}

// walUnmask undoes RocksDB's masking of a stored checksum (rotate right
// by 15 bits, plus a constant).
func walUnmask(c uint32) uint32 {
	c -= walCRCMaskADD
	return c<<15 | c>>17
}
