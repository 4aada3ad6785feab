// Package smallfs mounts a small tmpfs for a test that fills a disk
// (ENOSPC on a real filesystem, not a mock). It imports nothing of meta.
package smallfs
