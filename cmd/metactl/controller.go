package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

func trimEnum(s, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(s, prefix))
}

// controllerCommands: broker list, connector list, controller status.
func (a *app) controllerCommands() []*cobra.Command {
	brokers := &cobra.Command{Use: "broker", Short: "Brokers of the messaging cluster"}
	brokers.AddCommand(noArgs(a, "list", "Registered brokers: epoch, liveness, connectors",
		func(c *client.Client, ctx context.Context) (*metapb.ListBrokersResponse, error) {
			return c.ListBrokers(ctx, &metapb.ListBrokersRequest{})
		}, func(resp *metapb.ListBrokersResponse) {
			a.table("BROKER\tEPOCH\tSTATUS\tCONNECTORS\tSINCE\tENDPOINTS", func(tw io.Writer) {
				for _, b := range resp.Brokers {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\n", b.BrokerId, b.Epoch, trimEnum(b.Status.String(), "BROKER_STATUS_"),
						b.Connectors, time.Unix(0, b.StatusChangedAtUnixNano).UTC().Format(time.RFC3339), strings.Join(b.Endpoints, ","))
				}
			})
		}))
	var broker string
	connectors := &cobra.Command{Use: "connector", Short: "Connectors and their assignments"}
	list := noArgs(a, "list", "Connector assignments: owner, epoch, state",
		func(c *client.Client, ctx context.Context) (*metapb.ListAssignmentsResponse, error) {
			return c.ListAssignments(ctx, &metapb.ListAssignmentsRequest{BrokerId: broker})
		}, func(resp *metapb.ListAssignmentsResponse) {
			a.table("CONNECTOR\tOWNER\tEPOCH\tSTATE\tERROR", func(tw io.Writer) {
				for _, as := range resp.Assignments {
					owner := as.BrokerId
					if owner == "" {
						owner = "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", as.Connector, owner, as.Epoch,
						trimEnum(as.State.String(), "CONNECTOR_RUN_STATE_"), as.Error)
				}
			})
		})
	list.Flags().StringVar(&broker, "broker", "", "only this broker's connectors")
	connectors.AddCommand(list)
	ctl := &cobra.Command{Use: "controller", Short: "The controller"}
	ctl.AddCommand(noArgs(a, "status", "Where the controller runs and what it sees", (*client.Client).ControllerStatus,
		func(resp *metapb.ControllerStatusResponse) {
			fmt.Fprintf(a.out, "controller: %s (metadata-0 term %d), active since %s\n", resp.NodeId, resp.Term,
				time.Unix(0, resp.ActiveSinceUnixNano).UTC().Format(time.RFC3339))
			fmt.Fprintf(a.out, "brokers: %d alive, %d down (session timeout %dms)\n", resp.BrokersAlive, resp.BrokersDown, resp.HeartbeatTimeoutMs)
			fmt.Fprintf(a.out, "connectors: %d, %d unassigned\n", resp.Connectors, resp.Unassigned)
			fmt.Fprintf(a.out, "decisions since activation: %d brokers declared down, %d assignments\n", resp.BrokersDeclaredDown, resp.AssignmentsMade)
			var nodes []string
			for n := range resp.LeadersPerNode {
				nodes = append(nodes, n)
			}
			sort.Strings(nodes)
			var parts []string
			for _, n := range nodes {
				parts = append(parts, fmt.Sprintf("%s=%d", n, resp.LeadersPerNode[n]))
			}
			fmt.Fprintf(a.out, "group leaders per node: %s\n", strings.Join(parts, " "))
		}))
	return []*cobra.Command{brokers, connectors, ctl}
}
