package main

import (
	"fmt"
	"testing"
)

func TestKeySpaceKey(t *testing.T) {
	tests := []struct {
		prefix string
		size   int
		i      int64
		want   string
	}{
		{"bench/put/", 32, 0, "bench/put/0000000000000000000000"},
		{"bench/put/", 32, 42, "bench/put/0000000000000000000042"},
		{"p", 4, 999, "p999"},
		{"", 3, 7, "007"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d/%d", tt.prefix, tt.size, tt.i), func(t *testing.T) {
			ks := keySpace{prefix: tt.prefix, size: tt.size}
			got := string(ks.key(make([]byte, 0, 4), tt.i))
			if got != tt.want {
				t.Errorf("key(%d): got %q, want %q", tt.i, got, tt.want)
			}
			if len(got) != tt.size {
				t.Errorf("len(key(%d)): got %d, want %d", tt.i, len(got), tt.size)
			}
		})
	}
}

func TestKeySpaceValidate(t *testing.T) {
	tests := []struct {
		prefix  string
		size    int
		n       int64
		wantErr bool
	}{
		{"p", 4, 1000, false}, // largest index 999 fits
		{"p", 4, 1001, true},  // 1000 needs four digits
		{"bench/put/", 32, 1_000_000_000, false},
		{"abcdef", 6, 1, true}, // no room for a digit
		{"", 1, 10, false},
		{"", 1, 11, true},
	}
	for _, tt := range tests {
		err := keySpace{prefix: tt.prefix, size: tt.size}.validate(tt.n)
		if (err != nil) != tt.wantErr {
			t.Errorf("validate(prefix %q, size %d, n %d): got %v, want error %v", tt.prefix, tt.size, tt.n, err, tt.wantErr)
		}
	}
}

func TestRunConfigCalls(t *testing.T) {
	tests := []struct {
		total     int64
		batch     int
		wantCalls int64
		wantLast  int
	}{
		{10, 1, 10, 1},
		{10, 3, 4, 1},
		{9, 3, 3, 3},
		{1, 100, 1, 1},
	}
	for _, tt := range tests {
		c := runConfig{total: tt.total, batch: tt.batch}
		if got := c.calls(); got != tt.wantCalls {
			t.Errorf("calls(total %d, batch %d): got %d, want %d", tt.total, tt.batch, got, tt.wantCalls)
		}
		if got := c.items(c.calls() - 1); got != tt.wantLast {
			t.Errorf("items(last) (total %d, batch %d): got %d, want %d", tt.total, tt.batch, got, tt.wantLast)
		}
		var sum int64
		for s := range c.calls() {
			sum += int64(c.items(s))
		}
		if sum != tt.total {
			t.Errorf("items summed over calls (total %d, batch %d): got %d, want %d", tt.total, tt.batch, sum, tt.total)
		}
	}
}

func TestOffsetsBatch(t *testing.T) {
	o := &offsetsWorkload{offsetSpace: offsetSpace{groups: 3, partitions: 5, topic: "t", prefix: "g"}}
	w := newWorker(0, 1, 0)
	tests := []struct {
		seq       int64
		n         int
		wantGroup string
		wantParts []int32
	}{
		{0, 2, "g0", []int32{0, 1}},
		{1, 2, "g1", []int32{0, 1}},
		{3, 2, "g0", []int32{2, 3}},
		{6, 2, "g0", []int32{4, 0}}, // wraps around the partitions
		{2, 5, "g2", []int32{0, 1, 2, 3, 4}},
	}
	for _, tt := range tests {
		got := o.batch(w, tt.seq, tt.n)
		if len(got) != len(tt.wantParts) {
			t.Fatalf("batch(%d, %d): got %d offsets, want %d", tt.seq, tt.n, len(got), len(tt.wantParts))
		}
		for i, oc := range got {
			if oc.group != tt.wantGroup || oc.topic != "t" || oc.partition != tt.wantParts[i] || oc.offset != tt.seq {
				t.Errorf("batch(%d, %d)[%d]: got %+v, want group %s topic t partition %d offset %d",
					tt.seq, tt.n, i, oc, tt.wantGroup, tt.wantParts[i], tt.seq)
			}
		}
	}
}

func TestWorkerValuesReproducible(t *testing.T) {
	a, b := newWorker(3, 7, 64), newWorker(3, 7, 64)
	if string(a.value) != string(b.value) {
		t.Errorf("same seed and id: got values %q and %q, want equal", a.value, b.value)
	}
	if c := newWorker(4, 7, 64); string(c.value) == string(a.value) {
		t.Errorf("different worker ids: got equal values %q, want different", a.value)
	}
	if len(a.value) != 64 {
		t.Errorf("value size: got %d, want 64", len(a.value))
	}
}
