package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/metamq/meta/rocks"
)

func main() {
	keys := flag.Int("keys", 2_000_000, "keys to write")
	batch := flag.Int("batch", 1000, "puts per batch commit")
	reads := flag.Int("reads", 200_000, "random point reads after the writes")
	dir := flag.String("dir", "", "database directory (default: a temporary one, removed at exit)")
	flag.Parse()
	if err := run(*dir, *keys, *batch, *reads); err != nil {
		fmt.Fprintln(os.Stderr, "memprobe:", err)
		os.Exit(1)
	}
}

type probe struct {
	start time.Time
}

const rowFormat = "%-22s %7s %8s %8s %8s %8s %10s %8s %8s\n"

func (p *probe) row(stage string, db *rocks.DB) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	var m rocks.MemoryUsage
	if db != nil {
		m = db.MemoryUsage()
	}
	fmt.Printf(rowFormat, stage, fmt.Sprintf("%.1fs", time.Since(p.start).Seconds()),
		mb(rss()), mb(ms.HeapInuse), mb(m.BlockCacheUsage), mb(m.BlockCachePinned), mb(m.MemTables), mb(m.TableReaders), mb(m.Total()))
}

func mb(b uint64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }

// rss returns VmRSS in bytes, 0 if unreadable.
func rss() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func key(i uint64) []byte {
	k := make([]byte, 32)
	copy(k, "kv/user/")
	binary.BigEndian.PutUint64(k[24:], i*0x9E3779B97F4A7C15) // spread over the key space
	return k
}

func run(dir string, keys, per, reads int) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "memprobe-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	p := &probe{start: time.Now()}
	fmt.Printf("all figures in MiB; cache = block cache usage (data, index and filter blocks)\n")
	fmt.Printf(rowFormat, "stage", "time", "RSS", "Go heap", "cache", "pinned", "memtables", "readers", "rocks")
	p.row("start", nil)

	opts := rocks.DefaultOptions(dir)
	groups := []string{"metadata-0", "offset-0", "offset-1", "data-0", "data-1"}
	db, err := rocks.Open(opts, groups)
	if err != nil {
		return err
	}
	defer db.Close()
	p.row("open", db)
	space, err := db.Data("data-0")
	if err != nil {
		return err
	}

	r := rand.New(rand.NewPCG(1, 2))
	val := make([]byte, 200)
	for i := 0; i < keys; i += per {
		b := db.NewBatch()
		for j := i; j < min(i+per, keys); j++ {
			for k := 0; k < len(val); k += 8 {
				binary.LittleEndian.PutUint64(val[k:], r.Uint64())
			}
			b.Put(space, key(uint64(j)), val)
		}
		err := b.Commit(false)
		b.Close()
		if err != nil {
			return err
		}
		if n := i + per; n%(keys/4) == 0 {
			p.row(fmt.Sprintf("written %d", n), db)
		}
	}
	p.row("all written", db)
	if err := db.Flush(); err != nil {
		return err
	}
	p.row("flushed", db)
	for range reads {
		if _, found, err := space.Get(key(r.Uint64N(uint64(keys)))); err != nil || !found {
			return fmt.Errorf("read back: found %v, err %v", found, err)
		}
	}
	p.row(fmt.Sprintf("%d reads", reads), db)
	n := 0
	sn := db.NewSnapshot()
	err = sn.Scan(space, nil, nil, func(k, v []byte) bool { n++; return true })
	sn.Close()
	if err != nil {
		return err
	}
	p.row(fmt.Sprintf("snapshot scan %d", n), db)
	n = 0
	if err := space.Scan(nil, nil, func(k, v []byte) bool { n++; return true }); err != nil {
		return err
	}
	p.row(fmt.Sprintf("space scan %d", n), db)
	fmt.Printf("properties: estimate-num-keys=%s total-sst-files-size=%s\n",
		space.Property("rocksdb.estimate-num-keys"), space.Property("rocksdb.total-sst-files-size"))
	if err := db.Close(); err != nil {
		return err
	}
	p.row("closed", nil)
	return nil
}
