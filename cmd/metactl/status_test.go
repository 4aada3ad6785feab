package main

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/metamq/meta/rpc/metapb"
)

// metactl status prints a table of the halted replicas with the node,
// what halted each and why, and no table when none halted (an
// unreachable node's missing view included).
func TestStatusPrintsHaltedGroups(t *testing.T) {
	var out bytes.Buffer
	a := &app{out: &out, output: "text"}
	a.printHalted([]*metapb.StatusResponse{{NodeId: "n1"}, nil, {NodeId: "n2"}})
	if out.Len() != 0 {
		t.Fatalf("no halted replica: got %q, want nothing", out.String())
	}
	a.printHalted([]*metapb.StatusResponse{{NodeId: "n1"}, nil, {NodeId: "n3", Halted: []*metapb.HaltedGroup{
		{Group: "data-0", Kind: "corrupt", Index: 42, Reason: "state hash differs\nfrom the majority"},
		{Group: "offset-1", Kind: "storage", Index: 7, Reason: "disk full"},
	}}})
	for _, row := range []string{`(?m)^data-0\s+n3\s+corrupt\s+42\s+state hash differs from the majority$`, `(?m)^offset-1\s+n3\s+storage\s+7\s+disk full$`} {
		if !regexp.MustCompile(row).MatchString(out.String()) {
			t.Fatalf("halted replicas: no row %q in\n%s", row, out.String())
		}
	}
	if regexp.MustCompile(`(?m)^\S+\s+n1\s`).MatchString(out.String()) {
		t.Fatalf("a row for n1, which halted nothing, in\n%s", out.String())
	}
}
