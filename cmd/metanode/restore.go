package main

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io"

	"github.com/spf13/cobra"

	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/rpc/client"
)

// restoreCommand is `metanode restore`: lay out a data directory of a new
// cluster from a backup file (metactl snapshot save). Every initial member
// of the new cluster runs it with the same file and the same
// --initial-cluster, then starts with its --id and --data-dir.
func restoreCommand() *cobra.Command {
	cfg := metanode.DefaultConfig()
	var from, initial, logLevel string
	cmd := &cobra.Command{
		Use:   "restore --from FILE --id ID --data-dir DIR --initial-cluster id=host:port,...",
		Short: "Lay out this node's data directory of a NEW cluster holding a backup's state (run it on every initial member, same file and flags)",
		Long: `restore verifies the whole backup file (every checksum, every group's stream)
before it writes anything, then writes DIR (which must not exist or be empty)
as a first start with --initial-cluster would, each group this node is given
holding the backup's state. The new cluster gets a new id (--cluster-id, by
default one derived from --initial-cluster and the backup). Then start the
node: metanode --id ID --data-dir DIR --listen ADDR.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" {
				return errors.New("--from: the backup file is required")
			}
			logger, err := newLogger(logLevel, "text")
			if err != nil {
				return err
			}
			cfg.Logger = logger
			if cfg.InitialCluster, err = metanode.ParsePeers(initial); err != nil {
				return fmt.Errorf("--initial-cluster: %w", err)
			}
			b, err := client.OpenBackup(from)
			if err != nil {
				return err
			}
			defer b.Close()
			if err := b.Verify(); err != nil {
				return err
			}
			man := b.Manifest
			if cfg.ClusterID == "" {
				cfg.ClusterID = restoredID(cfg.InitialCluster, man)
			}
			if cfg.ClusterID == man.ClusterID {
				return fmt.Errorf("--cluster-id: %q is the id of the cluster backed up; a restored cluster is a new one", cfg.ClusterID)
			}
			cfg.OffsetGroups, cfg.DataGroups = int(man.OffsetGroups), int(man.DataGroups)
			var groups []metanode.RestoreGroup
			for _, g := range man.Groups {
				groups = append(groups, metanode.RestoreGroup{Name: g.Group, AppliedIndex: g.AppliedIndex, Revision: g.Revision,
					Hash: g.Hash, Keys: g.Keys, Open: func() io.Reader { return b.Section(g) }})
			}
			hosted, err := metanode.Restore(cfg, groups)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %v from %s (cluster %s, taken %s) into %s: node %s of new cluster %s\n",
				hosted, from, man.ClusterID, man.Created.Format("2006-01-02T15:04:05Z"), cfg.DataDir, cfg.ID, cfg.ClusterID)
			fmt.Fprintf(cmd.OutOrStdout(), "start it with: metanode --id %s --data-dir %s --listen ADDR\n", cfg.ID, cfg.DataDir)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "the backup file (metactl snapshot save)")
	f.StringVar(&cfg.ID, "id", "", "this node's id in the new cluster (required)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "the data directory to create (required; must not exist or be empty)")
	f.StringVar(&initial, "initial-cluster", "", "members of the new cluster: id=host:port,... (this node included; the same on every member)")
	f.StringVar(&cfg.ClusterID, "cluster-id", "", "id of the new cluster (default: derived from --initial-cluster and the backup)")
	f.IntVar(&cfg.ReplicationFactor, "replication-factor", cfg.ReplicationFactor, "replicas of each offset and data group of the new cluster")
	f.IntVar(&cfg.MetadataReplicationFactor, "metadata-replication-factor", cfg.MetadataReplicationFactor, "replicas of metadata-0 of the new cluster: 1, 3 or 5")
	f.StringVar(&logLevel, "log-level", "warn", "debug, info, warn or error")
	return cmd
}

// restoredID names the cluster restored from man with the initial
// members peers: the same on every member restoring the same file with
// the same list, and never the backed-up cluster's.
func restoredID(peers []metanode.Peer, man *client.BackupManifest) string {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s@%s", man.ClusterID, man.Created.UTC().Format("2006-01-02T15:04:05.000000000Z"))
	return fmt.Sprintf("%s-r%08x", metanode.DeriveClusterID(peers), h.Sum32())
}
