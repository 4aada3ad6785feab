package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

// alarmCommand lists and clears the cluster's alarms (NOSPACE: a member's
// storage passed its --quota-bytes or --min-free-bytes; writes that take
// space are refused until an admin disarms it).
func (a *app) alarmCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "alarm", Short: "List and clear the cluster's alarms (NOSPACE)"}
	print := func(resp *metapb.AlarmsResponse) {
		if len(resp.Alarms) == 0 {
			fmt.Fprintln(a.out, "no alarms")
		}
		for _, al := range resp.Alarms {
			fmt.Fprintf(a.out, "%s\t%s\t%s\n", al.Alarm, al.Member, al.Message)
		}
	}
	list := &cobra.Command{
		Use: "list", Short: "List the raised alarms: ALARM MEMBER WHY", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return show(a, func(ctx context.Context, c *client.Client) (*metapb.AlarmsResponse, error) {
				return c.Alarms(ctx)
			}, print)
		},
	}
	var member string
	disarm := &cobra.Command{
		Use: "disarm", Short: "Clear the NOSPACE alarm (free space first: a member still past its limit raises it again); prints the alarms left", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return show(a, func(ctx context.Context, c *client.Client) (*metapb.AlarmsResponse, error) {
				return c.DisarmAlarm(ctx, "", member)
			}, print)
		},
	}
	disarm.Flags().StringVar(&member, "member", "", "clear only this member's alarm (default: every member's)")
	cmd.AddCommand(list, disarm)
	return cmd
}
