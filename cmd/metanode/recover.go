package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/metamq/meta/metanode"
)

// recoverCommand is `metanode recover`: after a majority of the nodes is
// lost for good, make one stopped survivor the only member of its cluster
// (metanode.Recover), which then starts as usual and grows back by adding
// nodes.
func recoverCommand() *cobra.Command {
	cfg := metanode.DefaultConfig()
	var logLevel string
	var opts metanode.RecoverOptions
	cmd := &cobra.Command{
		Use:   "recover --id ID --data-dir DIR [--dry-run] [--recreate-lost-groups]",
		Short: "Make this stopped survivor the only member of its cluster after a majority was lost (disaster recovery)",
		Long: `recover runs on a surviving node that is stopped, after the other nodes
(a majority) were lost for good. Every group the survivor holds is forced into
a configuration of this node alone (hashicorp/raft RecoverCluster), keeping
everything it had applied or had in its log; metadata-0's members and
directory are rewritten so that this node is the only member and the only
replica of every group. The cluster keeps its id. It refuses, changing
nothing, when a group has no replica here (every replica was lost: restore a
backup instead, or give --recreate-lost-groups to make such groups again,
empty, on this node: their data is gone), when the data directory is in use
or belongs to another node. Run it again if it was interrupted. Then start the node (metanode --id
ID --data-dir DIR --listen ADDR) and grow the cluster back: metactl member
add, then metanode --join on each new node. Never restart a lost node with
its old data: wipe it first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(logLevel, "text")
			if err != nil {
				return err
			}
			cfg.Logger = logger
			rep, err := metanode.Recover(cfg, opts)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			verb := "recovered"
			if opts.DryRun {
				verb = "would recover (dry run: nothing written)"
			}
			fmt.Fprintf(out, "%s node %s (%s) as the only member of cluster %s\n", verb, cfg.ID, rep.Addr, rep.ClusterID)
			fmt.Fprintf(out, "groups, each now a configuration of this node alone: %v\n", rep.Groups)
			fmt.Fprintf(out, "members removed (lost; never restart them with their old data): %v\n", rep.Removed)
			if len(rep.NotVoter) > 0 {
				fmt.Fprintf(out, "WARNING: groups whose replica here was not a voter, which may lack writes the lost voters acknowledged: %v\n", rep.NotVoter)
			}
			if len(rep.Recreated) > 0 {
				fmt.Fprintf(out, "WARNING: groups every replica of which was lost, recreated EMPTY on this node (their data is gone): %v\n", rep.Recreated)
			}
			if !opts.DryRun {
				fmt.Fprintf(out, "start it with: metanode --id %s --data-dir %s --listen %s\n", cfg.ID, cfg.DataDir, rep.Addr)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ID, "id", "", "the surviving node's id (required; its data directory's)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "the surviving node's data directory (required; the node must be stopped)")
	f.BoolVar(&opts.DryRun, "dry-run", false, "check and say what would be done, writing nothing")
	f.BoolVar(&opts.RecreateLostGroups, "recreate-lost-groups", false, "make each group with no replica left again, EMPTY, on this node (its data is gone) instead of refusing; never metadata-0")
	f.StringVar(&logLevel, "log-level", "warn", "debug, info, warn or error")
	return cmd
}
