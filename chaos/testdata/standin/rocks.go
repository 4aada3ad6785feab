//go:build rocks

package main

import (
	"fmt"
	"log"
	"path/filepath"
	"strconv"

	"github.com/linxGnu/grocksdb"
)

func init() {
	startHooks = append(startHooks, openRocks)
}

// openRocks opens (creating) a RocksDB, increments a synced start counter
// and closes it again.
func openRocks(name, dataDir string) error {
	opts := grocksdb.NewDefaultOptions()
	defer opts.Destroy()
	opts.SetCreateIfMissing(true)
	db, err := grocksdb.OpenDb(opts, filepath.Join(dataDir, "rocks"))
	if err != nil {
		return fmt.Errorf("open rocksdb: %w", err)
	}
	defer db.Close()
	ro := grocksdb.NewDefaultReadOptions()
	defer ro.Destroy()
	v, err := db.GetBytes(ro, []byte("starts"))
	if err != nil {
		return fmt.Errorf("rocksdb get: %w", err)
	}
	n, _ := strconv.Atoi(string(v))
	n++
	wo := grocksdb.NewDefaultWriteOptions()
	defer wo.Destroy()
	wo.SetSync(true)
	if err := db.Put(wo, []byte("starts"), []byte(strconv.Itoa(n))); err != nil {
		return fmt.Errorf("rocksdb put: %w", err)
	}
	log.Printf("standin %s rocksdb starts=%d", name, n)
	return nil
}
