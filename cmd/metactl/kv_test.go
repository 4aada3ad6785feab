package main

import (
	"strings"
	"testing"

	"github.com/metamq/meta/metanode/metanodetest"
)

// mput and mget against a real in-process cluster with two data groups.
func TestKVBatchCommands(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{DataGroups: 2, Patient: true})
	eps := strings.Join(c.Endpoints(), ",")
	if _, err := metactl(t, eps, "mput", "a=1", "b=2", "c=3", "d=4"); err != nil {
		t.Fatalf("mput: %v", err)
	}
	out, err := metactl(t, eps, "mget", "d", "a", "c", "b")
	if err != nil || out != "d\t4\na\t1\nc\t3\nb\t2\n" {
		t.Fatalf("mget: got %q (%v), want the four keys in the order asked", out, err)
	}
	if _, err := metactl(t, eps, "mget", "a", "nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("mget of a missing key: got %v, want not found naming it", err)
	}
	if _, err := metactl(t, eps, "mput", "novalue"); err == nil {
		t.Fatal("mput without =: no error")
	}
}
