package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/verify/poll"
)

// metactl status shows each node's feature level and the cluster version
// it sees: on a mixed cluster (n3 at the base level) the cluster version
// is the lower level on every node; once n3 is restarted at this
// release's level, every node shows the version raised.
func TestStatusShowsClusterVersion(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{Configure: func(cfg *metanode.Config) {
		if cfg.ID == "n3" {
			cfg.FeatureLevel = sm.BaseLevel
		}
	}})
	eps := strings.Join(c.Endpoints(), ",")
	out, err := metactl(t, eps, "status")
	if err != nil {
		t.Fatalf("metactl status: %v", err)
	}
	for id, level := range map[string]uint32{"n1": sm.FeatureLevel, "n2": sm.FeatureLevel, "n3": sm.BaseLevel} {
		row := regexp.MustCompile(fmt.Sprintf(`(?m)^%s\s+\S+\s+%d\s+%d\s*$`, id, level, sm.BaseLevel))
		if !row.MatchString(out) {
			t.Fatalf("metactl status on a mixed cluster: no row %q (%s at level %d, cluster version %d) in\n%s", row, id, level, sm.BaseLevel, out)
		}
	}

	c.Stop("n3")
	c.SetFeatureLevel("n3", sm.FeatureLevel)
	if err := c.Restart("n3"); err != nil {
		t.Fatal(err)
	}
	poll.For(t, "every node showing the cluster version raised", 60*time.Second, func() error {
		out, err := metactl(t, eps, "-o", "json", "status")
		if err != nil {
			return err
		}
		var views []struct {
			Status *metapb.StatusResponse `json:"status"`
		}
		if err := json.Unmarshal([]byte(out), &views); err != nil {
			return fmt.Errorf("status output %q: %w", out, err)
		}
		for _, v := range views {
			if v.Status == nil || v.Status.FeatureLevel != sm.FeatureLevel || v.Status.ClusterVersion != sm.FeatureLevel {
				return fmt.Errorf("a node shows %v, want feature level and cluster version %d", v.Status, sm.FeatureLevel)
			}
		}
		return poll.Check(len(views) == 3, fmt.Sprintf("%d views, want 3", len(views)))
	})
}
