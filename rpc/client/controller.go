package client

import (
	"context"

	"github.com/metamq/meta/rpc/metapb"
)

// RegisterBroker registers a broker with the controller and returns its
// epoch (and the heartbeat interval and session timeout to use). It is
// routed to metadata-0's leader, which runs the controller.
func (c *Client) RegisterBroker(ctx context.Context, req *metapb.RegisterBrokerRequest) (*metapb.RegisterBrokerResponse, error) {
	return write(ctx, c, metapb.MetadataGroup, func(ctx context.Context, ep *endpoint) (*metapb.RegisterBrokerResponse, error) {
		return metapb.NewControllerClient(ep.conn).RegisterBroker(ctx, req)
	})
}

// Heartbeat tells the controller the broker is alive. A stale epoch fails
// with FailedPrecondition (reason STALE_EPOCH): register again.
func (c *Client) Heartbeat(ctx context.Context, req *metapb.HeartbeatRequest) (*metapb.HeartbeatResponse, error) {
	return write(ctx, c, metapb.MetadataGroup, func(ctx context.Context, ep *endpoint) (*metapb.HeartbeatResponse, error) {
		return metapb.NewControllerClient(ep.conn).Heartbeat(ctx, req)
	})
}

// ReportConnector reports on a connector the broker owns, under the
// assignment's epoch.
func (c *Client) ReportConnector(ctx context.Context, req *metapb.ReportConnectorRequest) (*metapb.ReportConnectorResponse, error) {
	return write(ctx, c, metapb.MetadataGroup, func(ctx context.Context, ep *endpoint) (*metapb.ReportConnectorResponse, error) {
		return metapb.NewControllerClient(ep.conn).ReportConnector(ctx, req)
	})
}

// ListBrokers lists registered brokers.
func (c *Client) ListBrokers(ctx context.Context, req *metapb.ListBrokersRequest) (*metapb.ListBrokersResponse, error) {
	return read(ctx, c, func(ctx context.Context, ep *endpoint) (*metapb.ListBrokersResponse, error) {
		return metapb.NewControllerClient(ep.conn).ListBrokers(ctx, req)
	})
}

// ListAssignments lists connector assignments.
func (c *Client) ListAssignments(ctx context.Context, req *metapb.ListAssignmentsRequest) (*metapb.ListAssignmentsResponse, error) {
	return read(ctx, c, func(ctx context.Context, ep *endpoint) (*metapb.ListAssignmentsResponse, error) {
		return metapb.NewControllerClient(ep.conn).ListAssignments(ctx, req)
	})
}

// ControllerStatus asks the node running the controller for its status.
func (c *Client) ControllerStatus(ctx context.Context) (*metapb.ControllerStatusResponse, error) {
	return write(ctx, c, metapb.MetadataGroup, func(ctx context.Context, ep *endpoint) (*metapb.ControllerStatusResponse, error) {
		return metapb.NewControllerClient(ep.conn).Status(ctx, &metapb.ControllerStatusRequest{})
	})
}
