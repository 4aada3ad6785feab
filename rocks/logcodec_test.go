package rocks

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// sameLog reports how got differs from want, "" if it does not.
func sameLog(got, want *raft.Log) string {
	switch {
	case got.Index != want.Index:
		return "Index"
	case got.Term != want.Term:
		return "Term"
	case got.Type != want.Type:
		return "Type"
	case !bytes.Equal(got.Data, want.Data):
		return "Data"
	case !bytes.Equal(got.Extensions, want.Extensions):
		return "Extensions"
	case !got.AppendedAt.Equal(want.AppendedAt):
		return "AppendedAt"
	}
	return ""
}

func TestLogCodecRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		log  raft.Log
	}{
		{"zero", raft.Log{Index: 1}},
		{"command", raft.Log{Index: 7, Term: 3, Type: raft.LogCommand, Data: []byte("hello")}},
		{"all fields", raft.Log{
			Index: math.MaxUint64, Term: math.MaxUint64, Type: raft.LogConfiguration,
			Data: bytes.Repeat([]byte{0xab}, 300), Extensions: []byte{0, 1, 2},
			AppendedAt: time.Date(2030, 5, 6, 7, 8, 9, 123456789, time.UTC),
		}},
		{"before the epoch", raft.Log{Index: 2, AppendedAt: time.Date(1901, 1, 1, 0, 0, 0, 1, time.UTC)}},
		{"now", raft.Log{Index: 3, Type: raft.LogBarrier, AppendedAt: time.Now()}},
		{"empty not nil", raft.Log{Index: 4, Data: []byte{}, Extensions: []byte{}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			enc := appendLog(nil, &tc.log)
			if enc[0] != logFormatV1 {
				t.Fatalf("first byte: got %d, want version %d", enc[0], logFormatV1)
			}
			var got raft.Log
			if err := decodeLog(tc.log.Index, enc, &got); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if f := sameLog(&got, &tc.log); f != "" {
				t.Fatalf("round trip differs in %s: got %+v, want %+v", f, got, tc.log)
			}
		})
	}
}

func TestLogCodecAliasing(t *testing.T) {
	l := raft.Log{Index: 1, Data: []byte("data"), Extensions: []byte("ext")}
	var got raft.Log
	if err := decodeLog(1, appendLog(nil, &l), &got); err != nil {
		t.Fatal(err)
	}
	got.Data = append(got.Data, "more"...)
	if string(got.Extensions) != "ext" {
		t.Fatalf("appending to Data changed Extensions to %q, want ext", got.Extensions)
	}
}

func TestLogCodecRejectsCorruption(t *testing.T) {
	good := appendLog(nil, &raft.Log{Index: 1, Term: 2, Data: []byte("abc"), AppendedAt: time.Unix(5, 6)})
	mutate := func(f func([]byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name string
		v    []byte
	}{
		{"empty", nil},
		{"unknown version", mutate(func(b []byte) []byte { b[0] = 2; return b })},
		{"truncated", good[:len(good)-1]},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"data length too long", mutate(func(b []byte) []byte { b[3] = 100; return b })},
		{"unknown flag", appendLog(nil, &raft.Log{Index: 1})[:0:0]},
	}
	// "unknown flag": a zero-time entry ends with its flags byte.
	bad := appendLog(nil, &raft.Log{Index: 1})
	bad[len(bad)-1] = 0x80
	tests[len(tests)-1].v = bad
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var l raft.Log
			if err := decodeLog(1, tc.v, &l); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decode(%x): got %v, want ErrCorrupt", tc.v, err)
			}
		})
	}
}
