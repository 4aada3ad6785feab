package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/rpc/client"
)

// snapshotCommand is `metactl snapshot`: online backups of a whole
// cluster (save) and their verification (status). `metanode restore`
// builds a new cluster from one.
func (a *app) snapshotCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Back up every group of the cluster into one file, or check such a file"}
	var deadline time.Duration
	save := &cobra.Command{
		Use:   "save FILE",
		Short: "Back up every group, each at one applied index holding every write acknowledged before it began, into FILE",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			start := time.Now()
			man, err := c.SaveBackup(ctx, args[0], func(g client.BackupGroup) {
				fmt.Fprintf(a.errOut, "%s: applied index %d, %d keys, %d bytes\n", g.Group, g.AppliedIndex, g.Keys, g.Size)
			})
			if err != nil {
				return err
			}
			took := time.Since(start)
			return a.emitJSON(man, func() {
				var bytes int64
				for _, g := range man.Groups {
					bytes += g.Size
				}
				fmt.Fprintf(a.out, "saved %d groups of cluster %s to %s: %d bytes in %s (%.1f MiB/s)\n", len(man.Groups), man.ClusterID,
					args[0], bytes, took.Round(time.Millisecond), float64(bytes)/(1<<20)/max(took.Seconds(), 1e-3))
			})
		},
	}
	save.Flags().DurationVar(&deadline, "deadline", time.Hour, "bound on the whole backup (--timeout bounds each call's waits)")
	status := &cobra.Command{
		Use:   "status FILE",
		Short: "Verify a backup file whole (every checksum, every group's stream) and print its manifest",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			man, err := checkBackupFile(args[0])
			if err != nil {
				return err
			}
			return a.emitJSON(man, func() {
				kinds := map[string]int{}
				for _, g := range man.Groups {
					kinds[g.Kind]++
				}
				// The groups the file holds, not the counts the cluster
				// was created with (a split cluster has more).
				fmt.Fprintf(a.out, "cluster %s, taken %s by meta %s: %d offset and %d data groups; verified\n", man.ClusterID,
					man.Created.Format(time.RFC3339), man.MetaVersion, kinds["offset"], kinds["data"])
				a.table("GROUP\tKIND\tAPPLIED\tREVISION\tKEYS\tHASH\tBYTES", func(w io.Writer) {
					for _, g := range man.Groups {
						fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%016x\t%d\n", g.Group, g.Kind, g.AppliedIndex, g.Revision, g.Keys, g.Hash, g.Size)
					}
				})
			})
		},
	}
	cmd.AddCommand(save, status)
	return cmd
}

// checkBackupFile verifies a backup file as metanode restore does before
// it writes anything, and returns its manifest.
func checkBackupFile(path string) (*client.BackupManifest, error) {
	b, err := client.OpenBackup(path)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	if err := b.Verify(); err != nil {
		return nil, err
	}
	var groups []metanode.RestoreGroup
	for _, g := range b.Manifest.Groups {
		groups = append(groups, metanode.RestoreGroup{Name: g.Group, AppliedIndex: g.AppliedIndex, Revision: g.Revision,
			Open: func() io.Reader { return b.Section(g) }})
	}
	if err := metanode.CheckBackup(groups); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b.Manifest, nil
}
