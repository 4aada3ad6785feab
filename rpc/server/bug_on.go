//go:build metabugs

package server

import (
	"os"
	"strings"
)

// plantedOpenAuth plants the bug "a caller without credentials is let in
// as an admin": only in builds tagged metabugs, and only while META_BUG
// contains "openauth" (read on every call, so tests can switch it).
func plantedOpenAuth() bool { return strings.Contains(os.Getenv("META_BUG"), "openauth") }
