package client

import (
	"context"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/metapb"
)

// The broker-facing calls: metadata resources, MQTT sessions, wills and
// retained messages, leases. Writes go to the leader of the group that
// owns them when all of a call's entries live in one group (else to any
// node, which splits the batch); like every write they are retried only
// when the server says they were definitely not applied. Reads are spread
// over the endpoints and retried until the deadline, except bad input
// and NotFound.

// groupOf returns the data group that holds every routing key, or "" when
// they span several groups or the topology is not known (the request then
// goes to any node, which splits it).
func (c *Client) groupOf(ctx context.Context, keys ...[]byte) string {
	return commonGroup(ctx, c, keys, (*metapb.Router).DataGroup)
}

// commonGroup returns the group (groupOf of the topology) that holds every
// one of items, or "" when they span several groups (any node splits the
// batch), there are none, the client is pinned or the topology is not
// known.
func commonGroup[K any](ctx context.Context, c *Client, items []K, groupOf func(*metapb.Router, K) string) string {
	if c.cfg.Pinned || len(items) == 0 {
		return ""
	}
	r, err := c.topology(ctx)
	if err != nil {
		return ""
	}
	return common(r, items, groupOf)
}

// common is the group r routes every one of items to, or "" when they
// span groups or there are none.
func common[K any](r *metapb.Router, items []K, groupOf func(*metapb.Router, K) string) string {
	if len(items) == 0 {
		return ""
	}
	g := groupOf(r, items[0])
	for _, it := range items[1:] {
		if groupOf(r, it) != g {
			return ""
		}
	}
	return g
}

// dataKeys routes a call by its data routing keys (routed): their one
// data group by the client's map, or "" when they span groups.
func dataKeys(keys ...[]byte) func(*metapb.Router) string {
	return func(r *metapb.Router) string { return common(r, keys, (*metapb.Router).DataGroup) }
}

// offsetKeys routes a call by its consumer groups, as dataKeys does.
func offsetKeys(consumerGroups ...string) func(*metapb.Router) string {
	return func(r *metapb.Router) string { return common(r, consumerGroups, (*metapb.Router).OffsetGroup) }
}

// IsNotFound reports whether err says the resource, session, will or lease
// asked for does not exist.
func IsNotFound(err error) bool { return status.Code(err) == codes.NotFound }

// IsAlreadyExists reports whether err says a resource (or a lease with
// another TTL) already exists.
func IsAlreadyExists(err error) bool { return status.Code(err) == codes.AlreadyExists }

// RevisionConflict reports whether err is a revision conflict of an update
// or delete, and the subject's current revision.
func RevisionConflict(err error) (current uint64, ok bool) {
	_, info := errorInfo(err)
	if info == nil || info.Reason != metapb.ReasonRevisionConflict {
		return 0, false
	}
	current, _ = strconv.ParseUint(info.Metadata[metapb.MetaCurrentRevision], 10, 64)
	return current, true
}

// IsStaleEpoch reports whether err says the broker epoch a call carried
// is no longer the broker's current one: another registration with the
// same broker id fenced this one.
func IsStaleEpoch(err error) bool {
	_, info := errorInfo(err)
	return info != nil && info.Reason == metapb.ReasonStaleEpoch
}

// Compacted reports whether err says a watch started below a group's
// compacted revision, which group, and the first revision still logged.
// Re-list, then watch from the listing's revision + 1.
func Compacted(err error) (group string, compactRevision uint64, ok bool) {
	_, info := errorInfo(err)
	if info == nil || info.Reason != metapb.ReasonCompacted {
		return "", 0, false
	}
	compactRevision, _ = strconv.ParseUint(info.Metadata[metapb.MetaCompactRevision], 10, 64)
	return info.Metadata[metapb.MetaGroup], compactRevision, true
}

// ---- metadata resources (metadata-0) ----

// CreateResource creates a resource; AlreadyExists if it exists.
func (c *Client) CreateResource(ctx context.Context, req *metapb.CreateResourceRequest) (*metapb.CreateResourceResponse, error) {
	return write(ctx, c, metapb.MetadataGroup, func(ctx context.Context, ep *endpoint) (*metapb.CreateResourceResponse, error) {
		return metapb.NewMetadataClient(ep.conn).Create(ctx, req)
	})
}

// UpdateResource replaces a resource's spec if its mod_revision is still
// req.ExpectedRevision; see RevisionConflict.
func (c *Client) UpdateResource(ctx context.Context, req *metapb.UpdateResourceRequest) (*metapb.UpdateResourceResponse, error) {
	return write(ctx, c, metapb.MetadataGroup, func(ctx context.Context, ep *endpoint) (*metapb.UpdateResourceResponse, error) {
		return metapb.NewMetadataClient(ep.conn).Update(ctx, req)
	})
}

// DeleteResource deletes a resource (if req.ExpectedRevision is set, only
// at that revision).
func (c *Client) DeleteResource(ctx context.Context, req *metapb.DeleteResourceRequest) (*metapb.DeleteResourceResponse, error) {
	return write(ctx, c, metapb.MetadataGroup, func(ctx context.Context, ep *endpoint) (*metapb.DeleteResourceResponse, error) {
		return metapb.NewMetadataClient(ep.conn).Delete(ctx, req)
	})
}

// GetResource reads a resource; NotFound when there is none.
func (c *Client) GetResource(ctx context.Context, req *metapb.GetResourceRequest) (*metapb.GetResourceResponse, error) {
	return read(ctx, c, func(ctx context.Context, ep *endpoint) (*metapb.GetResourceResponse, error) {
		return metapb.NewMetadataClient(ep.conn).Get(ctx, req)
	})
}

// ListResources returns one page of a kind. To list and then watch without
// a gap, watch from the first page's revision + 1.
func (c *Client) ListResources(ctx context.Context, req *metapb.ListResourcesRequest) (*metapb.ListResourcesResponse, error) {
	return read(ctx, c, func(ctx context.Context, ep *endpoint) (*metapb.ListResourcesResponse, error) {
		return metapb.NewMetadataClient(ep.conn).List(ctx, req)
	})
}

// ---- sessions ----

// PutSessions creates or replaces sessions. Each data group's part is
// atomic; a batch spanning several groups may be partly applied only if
// the call fails with an unknown outcome. Concurrent puts of sessions of
// one group share calls (see coalesce.go).
func (c *Client) PutSessions(ctx context.Context, req *metapb.PutSessionsRequest) (*metapb.PutSessionsResponse, error) {
	keys := make([][]byte, 0, len(req.Sessions))
	for _, s := range req.Sessions {
		keys = append(keys, []byte(s.GetClientId()))
	}
	lk := laneKey{group: c.groupOf(ctx, keys...)}
	ids, unique := uniqueClientIDs(req)
	if c.co == nil || lk.group == "" || !unique {
		return c.putSessionsOne(ctx, lk, req)
	}
	return c.co.sessions.call(ctx, lk, req, len(req.Sessions), sessionsBytes(req), ids)
}

// DeleteSessions deletes sessions; Deleted[i] says whether ClientIds[i]
// had one.
func (c *Client) DeleteSessions(ctx context.Context, req *metapb.DeleteSessionsRequest) (*metapb.DeleteSessionsResponse, error) {
	keys := make([][]byte, 0, len(req.ClientIds))
	for _, id := range req.ClientIds {
		keys = append(keys, []byte(id))
	}
	return routed(ctx, c, dataKeys(keys...), func(ctx context.Context, ep *endpoint) (*metapb.DeleteSessionsResponse, error) {
		return metapb.NewSessionsClient(ep.conn).Delete(ctx, req)
	})
}

// GetSession reads a session; Session is nil when there is none.
func (c *Client) GetSession(ctx context.Context, req *metapb.GetSessionRequest) (*metapb.GetSessionResponse, error) {
	return read(ctx, c, func(ctx context.Context, ep *endpoint) (*metapb.GetSessionResponse, error) {
		return metapb.NewSessionsClient(ep.conn).Get(ctx, req)
	})
}

// ListSessions returns one page of sessions in client id order.
func (c *Client) ListSessions(ctx context.Context, req *metapb.ListSessionsRequest) (*metapb.ListSessionsResponse, error) {
	return read(ctx, c, func(ctx context.Context, ep *endpoint) (*metapb.ListSessionsResponse, error) {
		return metapb.NewSessionsClient(ep.conn).List(ctx, req)
	})
}

// ---- wills ----

// PutWill sets a client's will.
func (c *Client) PutWill(ctx context.Context, req *metapb.PutWillRequest) (*metapb.PutWillResponse, error) {
	return routed(ctx, c, dataKeys([]byte(req.GetWill().GetClientId())), func(ctx context.Context, ep *endpoint) (*metapb.PutWillResponse, error) {
		return metapb.NewWillsClient(ep.conn).Put(ctx, req)
	})
}

// DeleteWill deletes a client's will.
func (c *Client) DeleteWill(ctx context.Context, req *metapb.DeleteWillRequest) (*metapb.DeleteWillResponse, error) {
	return routed(ctx, c, dataKeys([]byte(req.ClientId)), func(ctx context.Context, ep *endpoint) (*metapb.DeleteWillResponse, error) {
		return metapb.NewWillsClient(ep.conn).Delete(ctx, req)
	})
}

// GetWill reads a client's will; Will is nil when there is none.
func (c *Client) GetWill(ctx context.Context, req *metapb.GetWillRequest) (*metapb.GetWillResponse, error) {
	return read(ctx, c, func(ctx context.Context, ep *endpoint) (*metapb.GetWillResponse, error) {
		return metapb.NewWillsClient(ep.conn).Get(ctx, req)
	})
}

// ListDueWills returns one page of the wills due now, over every data
// group.
func (c *Client) ListDueWills(ctx context.Context, req *metapb.ListDueWillsRequest) (*metapb.ListDueWillsResponse, error) {
	return read(ctx, c, func(ctx context.Context, ep *endpoint) (*metapb.ListDueWillsResponse, error) {
		return metapb.NewWillsClient(ep.conn).ListDue(ctx, req)
	})
}

// ClaimWill claims a due will for a broker; of brokers racing exactly one
// gets Claimed. An unknown outcome must not be retried blindly: read the
// will (GetWill) to see who holds the claim.
func (c *Client) ClaimWill(ctx context.Context, req *metapb.ClaimWillRequest) (*metapb.ClaimWillResponse, error) {
	return routed(ctx, c, dataKeys([]byte(req.ClientId)), func(ctx context.Context, ep *endpoint) (*metapb.ClaimWillResponse, error) {
		return metapb.NewWillsClient(ep.conn).Claim(ctx, req)
	})
}

// CompleteWill deletes a will the broker claimed and published.
func (c *Client) CompleteWill(ctx context.Context, req *metapb.CompleteWillRequest) (*metapb.CompleteWillResponse, error) {
	return routed(ctx, c, dataKeys([]byte(req.ClientId)), func(ctx context.Context, ep *endpoint) (*metapb.CompleteWillResponse, error) {
		return metapb.NewWillsClient(ep.conn).Complete(ctx, req)
	})
}

// ---- retained messages ----

// SetRetained stores a topic's retained message (an empty payload deletes
// it).
func (c *Client) SetRetained(ctx context.Context, req *metapb.SetRetainedRequest) (*metapb.SetRetainedResponse, error) {
	return routed(ctx, c, dataKeys([]byte(req.GetMessage().GetTopic())), func(ctx context.Context, ep *endpoint) (*metapb.SetRetainedResponse, error) {
		return metapb.NewRetainedClient(ep.conn).Set(ctx, req)
	})
}

// GetRetained reads a topic's retained message; Message is nil when there
// is none.
func (c *Client) GetRetained(ctx context.Context, req *metapb.GetRetainedRequest) (*metapb.GetRetainedResponse, error) {
	return read(ctx, c, func(ctx context.Context, ep *endpoint) (*metapb.GetRetainedResponse, error) {
		return metapb.NewRetainedClient(ep.conn).Get(ctx, req)
	})
}

// ListRetained returns one page of the retained messages matching a topic
// filter.
func (c *Client) ListRetained(ctx context.Context, req *metapb.ListRetainedRequest) (*metapb.ListRetainedResponse, error) {
	return read(ctx, c, func(ctx context.Context, ep *endpoint) (*metapb.ListRetainedResponse, error) {
		return metapb.NewRetainedClient(ep.conn).List(ctx, req)
	})
}

// ---- leases (every data group) ----

// LeaseGrant creates a lease (Id 0: the server picks one).
func (c *Client) LeaseGrant(ctx context.Context, req *metapb.LeaseGrantRequest) (*metapb.LeaseGrantResponse, error) {
	return write(ctx, c, "", func(ctx context.Context, ep *endpoint) (*metapb.LeaseGrantResponse, error) {
		return metapb.NewLeasesClient(ep.conn).Grant(ctx, req)
	})
}

// LeaseKeepAlive renews a lease by its TTL; NotFound once it expired.
func (c *Client) LeaseKeepAlive(ctx context.Context, req *metapb.LeaseKeepAliveRequest) (*metapb.LeaseKeepAliveResponse, error) {
	return write(ctx, c, "", func(ctx context.Context, ep *endpoint) (*metapb.LeaseKeepAliveResponse, error) {
		return metapb.NewLeasesClient(ep.conn).KeepAlive(ctx, req)
	})
}

// LeaseRevoke deletes a lease and the keys attached to it.
func (c *Client) LeaseRevoke(ctx context.Context, req *metapb.LeaseRevokeRequest) (*metapb.LeaseRevokeResponse, error) {
	return write(ctx, c, "", func(ctx context.Context, ep *endpoint) (*metapb.LeaseRevokeResponse, error) {
		return metapb.NewLeasesClient(ep.conn).Revoke(ctx, req)
	})
}

// LeaseTimeToLive reports a lease's remaining seconds (-1 when it does
// not exist) and, with Keys set, its keys.
func (c *Client) LeaseTimeToLive(ctx context.Context, req *metapb.LeaseTimeToLiveRequest) (*metapb.LeaseTimeToLiveResponse, error) {
	return read(ctx, c, func(ctx context.Context, ep *endpoint) (*metapb.LeaseTimeToLiveResponse, error) {
		return metapb.NewLeasesClient(ep.conn).TimeToLive(ctx, req)
	})
}
