package rocks

/*
#include <malloc.h>

// meta_limit_arenas caps glibc's malloc arenas; 0 where the C library has
// no such knob.
static int meta_limit_arenas(int n) {
#ifdef M_ARENA_MAX
	return mallopt(M_ARENA_MAX, n);
#else
	(void)n;
	return 0;
#endif
}
*/
import "C"

// limitMallocArenas caps the number of glibc malloc arenas for the whole
// process and reports whether the C library accepted it.
//
// Why: Go runs cgo calls on whichever OS thread is free, and glibc gives
// each thread that meets contention an arena of its own (up to 8 per core).
// Blocks RocksDB allocates for its block cache in one arena are freed, on
// eviction, into that arena, where the space stays reserved for that
// arena's threads. Measured with memprobe (2M keys, 128 MiB cache):
// 200,000 random reads took the RSS to 323 MiB with glibc's default and to
// 229 MiB with 2 arenas, for the same 128 MiB of cached blocks. The cap
// applies to arenas created afterwards, so it is set before the database
// opens, and it is process-wide: the Go runtime does not use malloc, so
// only C code (RocksDB) is affected.
func limitMallocArenas(n int) bool {
	return C.meta_limit_arenas(C.int(n)) == 1
}
