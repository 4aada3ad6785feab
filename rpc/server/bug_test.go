//go:build metabugs

package server_test

import (
	"testing"

	"github.com/metamq/meta/rpc/transport"
	"github.com/metamq/meta/verify"
)

// With the planted bug "openauth" (a caller without credentials let in
// as an admin), the chaos suite's auth checker fails the run, naming the
// anonymous write and read; without it the same server passes.
func TestPlantedOpenAuthCaught(t *testing.T) {
	dir, addr, as := authFake(t)
	admin := transport.ClientFiles(dir)
	check := func() verify.CheckResult {
		return verify.CheckAuth(ctx10(t), as(nil, ""), as(&admin, ""), addr, "auth-probe")
	}
	if res := check(); res.Verdict != verify.Valid {
		t.Fatalf("without the bug: %+v, want valid", res)
	}
	t.Setenv("META_BUG", "openauth")
	res := check()
	if res.Verdict != verify.Invalid || len(res.Failing) == 0 {
		t.Fatalf("with the bug: %+v, want invalid", res)
	}
	t.Logf("caught: %v", res.Failing)
}
