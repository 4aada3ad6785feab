package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metamq/meta/metanode/metanodetest"
)

// The hand try, through the command: `group split data-0` returns
// once the split is done, `group list --output json` shows two data groups
// with their ranges and versions, and every key written before reads back
// the same.
func TestGroupSplitCommand(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{DataGroups: 1, Patient: true})
	eps := strings.Join(c.Endpoints(), ",")
	var puts, keys []string
	for i := range 40 {
		puts = append(puts, fmt.Sprintf("k%d=v%d", i, i))
		keys = append(keys, fmt.Sprintf("k%d", i))
	}
	if _, err := metactl(t, eps, append([]string{"mput"}, puts...)...); err != nil {
		t.Fatalf("mput: %v", err)
	}
	if _, err := metactl(t, eps, "group", "split", "data-0", "--at", "zz"); err == nil || !strings.Contains(err.Error(), "--at") {
		t.Fatalf("split --at zz: got %v, want an error naming --at", err)
	}
	out, err := metactl(t, eps, "group", "split", "data-0")
	if want := "data-0 split: data-0 now holds [0x0,0x80000000)@2, data-1 holds [0x80000000,0x100000000)@2\n"; err != nil || out != want {
		t.Fatalf("group split data-0: got %q (%v), want %q", out, err, want)
	}
	out, err = metactl(t, eps, "group", "list", "--output", "json")
	if err != nil {
		t.Fatalf("group list: %v", err)
	}
	var list struct {
		Groups []struct {
			Group, Kind string
			Ranges      []struct{ Lo, Hi, Version string }
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("group list --output json: %v in %s", err, out)
	}
	got := map[string]string{}
	for _, g := range list.Groups {
		if g.Kind == "data" {
			for _, r := range g.Ranges {
				got[g.Group] += fmt.Sprintf("[%s,%s)@%s", r.Lo, r.Hi, r.Version)
			}
		}
	}
	if want := map[string]string{"data-0": "[0,2147483648)@2", "data-1": "[2147483648,4294967296)@2"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("data groups after the split: got %v, want %v", got, want)
	}
	out, err = metactl(t, eps, append([]string{"mget"}, keys...)...)
	var want strings.Builder
	for i := range keys {
		fmt.Fprintf(&want, "k%d\tv%d\n", i, i)
	}
	if err != nil || out != want.String() {
		t.Fatalf("mget after the split: got %q (%v), want every key as written", out, err)
	}
	// The new group is a group like the others for the calls that name
	// one: a backup of every group, a leadership transfer.
	file := filepath.Join(t.TempDir(), "backup.meta")
	if out, err := metactl(t, eps, "snapshot", "save", file); err != nil || !strings.Contains(out, "saved 4 groups") {
		t.Fatalf("snapshot save after the split: %q, %v; want saved 4 groups", out, err)
	}
	if out, err := metactl(t, eps, "snapshot", "status", file); err != nil || !strings.Contains(out, "1 offset and 2 data groups; verified") {
		t.Fatalf("snapshot status after the split: %q, %v; want 1 offset and 2 data groups", out, err)
	}
	to := "n1"
	if c.Leader("data-1") == to {
		to = "n2"
	}
	if _, err := metactl(t, eps, "leader", "transfer", "data-1", to); err != nil {
		t.Fatalf("leader transfer data-1 %s: %v", to, err)
	}
	if _, err := metactl(t, eps, "leader", "transfer", "data-9", to); err == nil || !strings.Contains(err.Error(), `"data-9" is not a group`) {
		t.Fatalf("leader transfer data-9: got %v, want a refusal naming the group", err)
	}
}

// A waiting command (group split, member drain, group move) prints each
// progress line once: polls that see no change print nothing.
func TestProgressPrintsChangesOnly(t *testing.T) {
	var errOut strings.Builder
	a := &app{output: "text", errOut: &errOut}
	for _, phase := range []string{"prepared", "prepared", "prepared", "copied", "copied", "fenced"} {
		a.progress("data-0: splitting, phase %s", phase)
	}
	want := "data-0: splitting, phase prepared\ndata-0: splitting, phase copied\ndata-0: splitting, phase fenced\n"
	if got := errOut.String(); got != want {
		t.Fatalf("progress lines: got %q, want %q", got, want)
	}
}
