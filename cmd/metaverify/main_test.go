package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyRun copies a saved run from verify/testdata into a temporary folder,
// since check writes report.html into it.
func copyRun(t *testing.T, name string) string {
	t.Helper()
	src := filepath.Join("..", "..", "verify", "testdata", "runs", name)
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestCheck(t *testing.T) {
	tests := []struct {
		run     string
		wantErr error
		want    []string
	}{
		{"stale-read", errNotValid, []string{"kv", "invalid", "failing: t/kv/000", "verdict: INVALID", "convergence (recorded)"}},
		{"good", nil, []string{"kv", "valid", "verdict: VALID"}},
	}
	for _, tt := range tests {
		t.Run(tt.run, func(t *testing.T) {
			dir := copyRun(t, tt.run)
			var out bytes.Buffer
			cmd := newRoot(&out)
			cmd.SetArgs([]string{"check", dir})
			err := cmd.Execute()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v\n%s", err, tt.wantErr, out.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			report, err := os.ReadFile(filepath.Join(dir, "report.html"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(report), "<html") || !strings.Contains(string(report), "seed 42") {
				t.Errorf("report.html: got %d bytes without the page or the summary", len(report))
			}
		})
	}
}

func TestCheckMissingRun(t *testing.T) {
	cmd := newRoot(&bytes.Buffer{})
	cmd.SetArgs([]string{"check", filepath.Join(t.TempDir(), "nothing")})
	if err := cmd.Execute(); err == nil || errors.Is(err, errNotValid) {
		t.Fatalf("got %v, want an error reading the run", err)
	}
}

func TestSchedule(t *testing.T) {
	run := func() string {
		var out bytes.Buffer
		cmd := newRoot(&out)
		cmd.SetArgs([]string{"schedule", "--seed", "3", "--kinds", "kill,partition", "--time", "40s"})
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	a, b := run(), run()
	if a != b || !strings.Contains(a, "#1 ") {
		t.Fatalf("got\n%s\nand\n%s\nwant the same non-empty schedule twice", a, b)
	}
}
