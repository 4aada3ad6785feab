// Package ci holds what CI runs besides `make test`'s Go tests: the
// dependency installer (deps.sh), the local cluster script (cluster.sh),
// the module pins (tools.go) and the architecture test (arch_test.go),
// which fails when a package imports against ../shared/ARCHITECTURE.md.
// It imports no meta package.
package ci
