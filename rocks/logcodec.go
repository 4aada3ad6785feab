package rocks

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// # Raft log entry format (column family "<group>/log")
//
// Key: the entry's index, 8 bytes big-endian, so that byte order is index
// order and a range of indexes is a range of keys.
//
// Value, version 1, in this order:
//
//	version     1 byte   = 1
//	type        1 byte   raft.LogType
//	term        uvarint
//	data        uvarint length, then that many bytes
//	extensions  uvarint length, then that many bytes
//	flags       1 byte   bit 0: AppendedAt is set; other bits must be 0
//	appendedAt  only if flag bit 0: varint seconds since the Unix epoch,
//	            then uvarint nanoseconds within that second (< 1e9)
//
// The index is not repeated in the value: the key carries it. A value must
// be consumed exactly; trailing bytes, an unknown version or unknown flag
// bits are corruption (ErrCorrupt), never guessed at. Empty Data or
// Extensions decode as nil. AppendedAt decodes as the same instant
// (time.Time.Equal) in the local zone, without a monotonic reading; the
// zero time is stored as "not set" and decodes as the zero time. A future
// version 2 gets a new version byte and its own decoder; version 1 values
// stay readable.
const logFormatV1 = 1

const flagAppendedAt = 1 << 0

func logKey(index uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), index)
}

// appendLog appends the encoding of l to buf.
func appendLog(buf []byte, l *raft.Log) []byte {
	buf = append(buf, logFormatV1, byte(l.Type))
	buf = binary.AppendUvarint(buf, l.Term)
	buf = binary.AppendUvarint(buf, uint64(len(l.Data)))
	buf = append(buf, l.Data...)
	buf = binary.AppendUvarint(buf, uint64(len(l.Extensions)))
	buf = append(buf, l.Extensions...)
	if l.AppendedAt.IsZero() {
		return append(buf, 0)
	}
	buf = append(buf, flagAppendedAt)
	buf = binary.AppendVarint(buf, l.AppendedAt.Unix())
	return binary.AppendUvarint(buf, uint64(l.AppendedAt.Nanosecond()))
}

// decodeLog fills l from an encoded value. Data and Extensions alias v
// (capacity-limited, so appending to one cannot overwrite the other): v must
// be Go memory the caller hands over.
func decodeLog(index uint64, v []byte, l *raft.Log) error {
	d := decoder{b: v}
	if ver := d.byte(); d.err == nil && ver != logFormatV1 {
		return fmt.Errorf("%w: log %d: unknown format version %d", ErrCorrupt, index, ver)
	}
	typ := d.byte()
	term := d.uvarint()
	data := d.bytes()
	ext := d.bytes()
	flags := d.byte()
	var at time.Time
	if d.err == nil && flags&^flagAppendedAt != 0 {
		return fmt.Errorf("%w: log %d: unknown flags %#x", ErrCorrupt, index, flags)
	}
	if flags&flagAppendedAt != 0 {
		sec := d.varint()
		nsec := d.uvarint()
		if d.err == nil && nsec >= 1e9 {
			return fmt.Errorf("%w: log %d: nanoseconds %d out of range", ErrCorrupt, index, nsec)
		}
		at = time.Unix(sec, int64(nsec))
	}
	if d.err == nil && len(d.b) != 0 {
		return fmt.Errorf("%w: log %d: %d trailing bytes", ErrCorrupt, index, len(d.b))
	}
	if d.err != nil {
		return fmt.Errorf("%w: log %d: %v", ErrCorrupt, index, d.err)
	}
	*l = raft.Log{
		Index:      index,
		Term:       term,
		Type:       raft.LogType(typ),
		Data:       data,
		Extensions: ext,
		AppendedAt: at,
	}
	return nil
}

// decoder reads the fields of a value; the first failure sticks in err and
// later reads return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = fmt.Errorf("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 { return readVarint(d, binary.Uvarint, "uvarint") }

func (d *decoder) varint() int64 { return readVarint(d, binary.Varint, "varint") }

// readVarint reads one field with read (binary.Uvarint or binary.Varint);
// what names the field's encoding when it is bad.
func readVarint[T uint64 | int64](d *decoder, read func([]byte) (T, int), what string) T {
	if d.err != nil {
		return 0
	}
	x, n := read(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("bad %s", what)
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("length %d exceeds the %d bytes left", n, len(d.b))
		return nil
	}
	if n == 0 {
		return nil
	}
	out := d.b[:n:n]
	d.b = d.b[n:]
	return out
}
