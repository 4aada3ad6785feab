package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/client"
)

// snapshot save writes a verified backup of every group; snapshot status
// prints its manifest, and refuses a damaged file naming the group.
func TestSnapshotSaveAndStatus(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{DataGroups: 2, Patient: true})
	eps := strings.Join(c.Endpoints(), ",")
	if _, err := metactl(t, eps, "put", "a", "1"); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "backup.meta")
	out, err := metactl(t, eps, "snapshot", "save", file)
	if err != nil || !strings.Contains(out, "saved 4 groups") {
		t.Fatalf("snapshot save: %q, %v; want saved 4 groups", out, err)
	}
	out, err = metactl(t, eps, "-o", "json", "snapshot", "status", file)
	if err != nil {
		t.Fatalf("snapshot status: %v", err)
	}
	var man client.BackupManifest
	if err := json.Unmarshal([]byte(out), &man); err != nil {
		t.Fatalf("status output %q: %v", out, err)
	}
	var data uint64
	for _, g := range man.Groups {
		if g.Kind == "data" {
			data += g.Keys
		}
	}
	if len(man.Groups) != 4 || man.ClusterID == "" || data == 0 {
		t.Fatalf("manifest: %d groups, cluster %q, %d data keys; want 4 groups, an id and the key a", len(man.Groups), man.ClusterID, data)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	g := man.Groups[1]
	b[g.Offset+g.Size-3] ^= 0xff
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := metactl(t, eps, "snapshot", "status", file); err == nil || !strings.Contains(err.Error(), g.Group+": checksum mismatch") {
		t.Fatalf("status of a damaged file: got %v, want %s: checksum mismatch", err, g.Group)
	}
}
