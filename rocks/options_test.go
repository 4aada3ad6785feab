package rocks

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultOptionsValid(t *testing.T) {
	if err := DefaultOptions("/x").Validate(); err != nil {
		t.Fatalf("DefaultOptions.Validate: got %v, want nil", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Options)
		fields []string // every field the error must name
	}{
		{"empty dir", func(o *Options) { o.Dir = "" }, []string{"Dir"}},
		{"tiny cache", func(o *Options) { o.BlockCacheBytes = 10 }, []string{"BlockCacheBytes"}},
		{"no write buffer", func(o *Options) { o.WriteBufferBytes = 0 }, []string{"WriteBufferBytes", "CFWriteBufferBytes"}},
		{"cf buffer above total", func(o *Options) { o.CFWriteBufferBytes = o.WriteBufferBytes + 1 }, []string{"CFWriteBufferBytes"}},
		{"few open files", func(o *Options) { o.MaxOpenFiles = 3 }, []string{"MaxOpenFiles"}},
		{"unlimited open files ok", func(o *Options) { o.MaxOpenFiles = -1 }, nil},
		{"no background jobs", func(o *Options) { o.MaxBackgroundJobs = 0 }, []string{"MaxBackgroundJobs"}},
		{"negative wal", func(o *Options) { o.MaxTotalWALBytes = -1 }, []string{"MaxTotalWALBytes"}},
		{"default wal ok", func(o *Options) { o.MaxTotalWALBytes = 0 }, nil},
		{"negative arenas", func(o *Options) { o.MallocArenas = -1 }, []string{"MallocArenas"}},
		{"glibc default arenas ok", func(o *Options) { o.MallocArenas = 0 }, nil},
		{"everything at once", func(o *Options) {
			*o = Options{MaxOpenFiles: 1, MaxTotalWALBytes: -5, MallocArenas: -1}
		}, []string{"Dir", "BlockCacheBytes", "WriteBufferBytes", "CFWriteBufferBytes", "MaxOpenFiles", "MaxBackgroundJobs", "MaxTotalWALBytes", "MallocArenas"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions("/x")
			tc.change(&o)
			before := o
			err := o.Validate()
			if o != before {
				t.Fatalf("Validate changed the options: got %+v, want %+v", o, before)
			}
			if len(tc.fields) == 0 {
				if err != nil {
					t.Fatalf("Validate: got %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("Validate: got %v, want an error wrapping ErrInvalidOptions", err)
			}
			for _, f := range tc.fields {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("Validate: got %q, want it to name %s", err, f)
				}
			}
		})
	}
}

func TestOpenRejectsInvalidOptions(t *testing.T) {
	o := testOptions(t.TempDir())
	o.MaxBackgroundJobs = 0
	if _, err := Open(o, nil); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("Open: got %v, want ErrInvalidOptions", err)
	}
}

// TestOptionsFileRecordsSettings checks, in the OPTIONS file RocksDB
// writes, the settings that cannot be observed otherwise: shutdown without
// flush, compression, pipelined writes, and the bounded memtables.
func TestOptionsFileRecordsSettings(t *testing.T) {
	dir := t.TempDir()
	db := openAt(t, dir, "g")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "OPTIONS-*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("OPTIONS files: got %v (%v), want at least one", files, err)
	}
	raw, err := os.ReadFile(files[len(files)-1])
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	for _, want := range []string{
		"avoid_flush_during_shutdown=true",
		"enable_pipelined_write=true",
		"db_write_buffer_size=8388608",
		"write_buffer_size=1048576",
		"max_background_jobs=2",
		"compression=kLZ4Compression",
		"bottommost_compression=kLZ4Compression",
		"cache_index_and_filter_blocks=true",
		"cache_index_and_filter_blocks_with_high_priority=true",
		"filter_policy=bloomfilter",
		"memtable_whole_key_filtering=true",
		"memtable_prefix_bloom_size_ratio=0.050000",
		`[CFOptions "g/log"]`,
		`[CFOptions "g/stable"]`,
		`[CFOptions "g/data"]`,
		`[CFOptions "node"]`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("OPTIONS file: %q missing", want)
		}
	}
	// Per column family: the raft log is not compressed, the data is.
	for cf, want := range map[string]string{"g/log": "kNoCompression", "g/data": "kLZ4Compression", "g/stable": "kLZ4Compression"} {
		_, section, ok := strings.Cut(text, `[CFOptions "`+cf+`"]`)
		if !ok {
			continue // reported above
		}
		section, _, _ = strings.Cut(section, "[CFOptions")
		for _, key := range []string{"\n  compression=", "bottommost_compression="} {
			if !strings.Contains(section, key+want) {
				t.Errorf("OPTIONS file, %s: want %s%s", cf, strings.TrimSpace(key), want)
			}
		}
	}
}
