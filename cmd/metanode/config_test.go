package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "metanode.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFileSetsFlagsAndFlagsWin(t *testing.T) {
	p := writeConfig(t, `
id: n1
data-dir: /var/lib/meta
listen: 0.0.0.0:7001
metrics-listen: 0.0.0.0:9001
join: [10.0.0.1:7001, 10.0.0.2:7001]
block-cache: 268435456
election-timeout: 2s
`)
	cmd := command()
	f := cmd.Flags()
	if err := f.Parse([]string{"--listen", "127.0.0.1:7101"}); err != nil {
		t.Fatal(err)
	}
	if err := applyConfigFile(f, p); err != nil {
		t.Fatalf("apply: %v", err)
	}
	want := map[string]string{
		"id":               "n1",
		"data-dir":         "/var/lib/meta",
		"listen":           "127.0.0.1:7101", // the flag wins
		"metrics-listen":   "0.0.0.0:9001",
		"join":             "10.0.0.1:7001,10.0.0.2:7001",
		"block-cache":      "268435456",
		"election-timeout": "2s",
		"write-buffer":     f.Lookup("write-buffer").DefValue, // untouched
	}
	for k, v := range want {
		if got := f.Lookup(k).Value.String(); got != v {
			t.Errorf("%s: got %q, want %q", k, got, v)
		}
	}
}

func TestConfigFileBadKeysAreNamed(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"unknown keys", "listen-addr: x\nid: n1\nbogus: 1\n", []string{`unknown key "bogus"`, `unknown key "listen-addr"`}},
		{"bad value", "block-cache: lots\n", []string{`key "block-cache"`}},
		{"mapping", "listen: {host: a}\n", []string{`key "listen"`, "mapping"}},
		{"config inside config", "config: other.yaml\n", []string{`unknown key "config"`}},
		{"not yaml", "id: [\n", []string{"metanode.yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := applyConfigFile(command().Flags(), writeConfig(t, tc.text))
			if err == nil {
				t.Fatalf("got nil error, want one naming %v", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestConfigFileMissingIDIsAnError(t *testing.T) {
	cmd := command()
	cmd.SetArgs([]string{"--config", writeConfig(t, "listen: 127.0.0.1:0\n")})
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "--id") {
		t.Fatalf("got %v, want an error naming --id", err)
	}
}
