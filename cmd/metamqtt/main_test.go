package main

import (
	"strings"
	"testing"
)

// Bad flags are refused before anything starts, each named.
func TestBadFlagsNamed(t *testing.T) {
	code, err := run([]string{"--store", "disk", "--batch-size", "0", "--will-claim-ttl", "10ms", "--log-level", "loud"})
	if code != 1 || err == nil {
		t.Fatalf("got code %d, err %v; want 1 and an error", code, err)
	}
	for _, f := range []string{"--broker-id", "--store", "--batch-size", "--will-claim-ttl", "--log-level"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not name %s", err, f)
		}
	}
}
