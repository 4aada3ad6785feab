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

// checkWALTails checks the last block of every write-ahead log in dir
// (the only one a record can run past the end in; records never cross
// blocks, so its records start at its start): reading whole logs, up to
// MaxTotalWALBytes, at every start would be wasted.
func checkWALTails(dir string) error {
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		return fmt.Errorf("rocks: list write-ahead logs: %w", err)
	}
	for _, f := range logs {
		block, start, err := lastWALBlock(f)
		if err != nil {
			return fmt.Errorf("rocks: read write-ahead log: %w", err)
		}
		if why := damagedTail(block, start); why != "" {
			return fmt.Errorf("rocks: open %s: %w: write-ahead log %s: %s", dir, ErrCorruptFiles, filepath.Base(f), why)
		}
	}
	return nil
}

// lastWALBlock reads a log's last block and returns it with its offset.
func lastWALBlock(path string) ([]byte, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	start := lastBlockStart(int(st.Size()))
	b := make([]byte, int(st.Size())-start)
	_, err = f.ReadAt(b, int64(start))
	return b, start, err
}

// lastBlockStart is the offset of the last block of a log of size bytes.
func lastBlockStart(size int) int {
	if size == 0 {
		return 0
	}
	return (size - 1) / walBlockBytes * walBlockBytes
}

// DamagedWALTail says, for a write-ahead log (its bytes) whose last block
// holds a record that runs past the end of the log (which RocksDB drops
// as a write cut short), why it is damage instead (empty: it may be a
// cut, or no record runs past the end).
func DamagedWALTail(log []byte) string {
	start := lastBlockStart(len(log))
	return damagedTail(log[start:], start)
}

// damagedTail walks the physical records of a log's last block, which
// starts at offset base, to the record that runs past the end.
func damagedTail(b []byte, base int) string {
	off := 0
	for off+walHeaderBytes <= len(b) {
		n := int(binary.LittleEndian.Uint16(b[off+4:]))
		typ := b[off+6]
		end := off + walHeaderBytes + n
		switch {
		case end > len(b):
			return pastTheEnd(b, off, base, n)
		case typ == 0 && n == 0:
			return "" // zeros: RocksDB skips the rest of the block
		case typ > walLastType:
			return "" // a format this check does not read
		}
		off = end
	}
	return ""
}

// pastTheEnd looks for damage in the record at off of the last block
// (at base), whose length n runs past the end of the log.
func pastTheEnd(b []byte, off, base, n int) string {
	payload := b[off+walHeaderBytes:]
	want := walUnmask(binary.LittleEndian.Uint32(b[off:]))
	for typ := byte(1); typ <= walLastType; typ++ {
		crc := crc32.Update(0, castagnoli, []byte{typ})
		for l := 0; ; l++ {
			if crc == want {
				return fmt.Sprintf("the record at offset %d says it holds %d bytes, past the end of the log, but it is whole at %d bytes (its checksum matches): its header is damaged, not cut short by a crash", base+off, n, l)
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
			return fmt.Sprintf("the record at offset %d says it holds %d bytes, past the end of the log, but a whole record lies inside them at offset %d: its header is damaged, not cut short by a crash", base+off, n, base+off+walHeaderBytes+q)
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
