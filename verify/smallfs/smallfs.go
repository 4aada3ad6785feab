package smallfs

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// Mount mounts a tmpfs of size bytes under /tmp for the test and returns
// its directory; it is unmounted after everything the test registers
// later has been cleaned up (register a cluster using it after Mount).
// Where mounting is not permitted (not root, no CAP_SYS_ADMIN) the test
// is skipped, loudly: nothing was tested.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "quota-fs-")
	if err != nil {
		t.Fatal(err)
	}
	MountAt(t, dir, size)
	return dir
}

// MountAt mounts a tmpfs of size bytes on dir (an empty directory it
// removes at cleanup), as Mount does.
func MountAt(t testing.TB, dir string, size int64) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Attach(dir, size); err != nil {
		_ = os.Remove(dir)
		t.Skipf("SKIPPED, NOT TESTED: cannot mount a small tmpfs to fill (%v); run as root to test a full disk", err)
	}
	t.Cleanup(func() {
		if err := Detach(dir); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
		_ = os.Remove(dir)
	})
}

// Attach mounts a tmpfs of size bytes on dir, writable by anyone (a node
// in a container may run as another user). It needs root (CAP_SYS_ADMIN).
func Attach(dir string, size int64) error {
	return unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0777", size))
}

// Detach unmounts the tmpfs on dir; what it held is gone.
func Detach(dir string) error {
	return unix.Unmount(dir, 0)
}

// Grow resizes the tmpfs at dir to size bytes (space freed).
func Grow(dir string, size int64) error {
	return unix.Mount("tmpfs", dir, "tmpfs", unix.MS_REMOUNT, fmt.Sprintf("size=%d", size))
}
