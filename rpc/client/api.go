package client

import (
	"context"
	"fmt"

	"github.com/metamq/meta/rpc/metapb"
)

// dataGroup returns the data group of key, or "" when the topology is not
// known (the request then goes to any node, which forwards it).
func (c *Client) dataGroup(ctx context.Context, key []byte) string {
	return c.groupOf(ctx, key)
}

// offsetGroup returns the offset group that holds every consumer group, or
// "" as groupOf says.
func (c *Client) offsetGroup(ctx context.Context, consumerGroups ...string) string {
	return commonGroup(ctx, c, consumerGroups, (*metapb.Router).OffsetGroup)
}

// Put stores a value. Concurrent puts to one group share MultiPut calls
// (see coalesce.go), except puts with a lease.
func (c *Client) Put(ctx context.Context, req *metapb.PutRequest) (*metapb.PutResponse, error) {
	lk := laneKey{group: c.dataGroup(ctx, req.Key)}
	if c.co == nil || lk.group == "" || !coalescablePut(req) {
		return c.putOne(ctx, lk, req)
	}
	return c.co.puts.call(ctx, lk, req, 1, len(req.Key)+len(req.Value), []string{string(req.Key)})
}

// Delete removes a key.
func (c *Client) Delete(ctx context.Context, req *metapb.DeleteRequest) (*metapb.DeleteResponse, error) {
	return routed(ctx, c, dataKeys(req.Key), func(ctx context.Context, ep *endpoint) (*metapb.DeleteResponse, error) {
		return ep.kv.Delete(ctx, req)
	})
}

// CompareAndSwap sets a key if its state matches the expectation.
func (c *Client) CompareAndSwap(ctx context.Context, req *metapb.CompareAndSwapRequest) (*metapb.CompareAndSwapResponse, error) {
	return routed(ctx, c, dataKeys(req.Key), func(ctx context.Context, ep *endpoint) (*metapb.CompareAndSwapResponse, error) {
		return ep.kv.CompareAndSwap(ctx, req)
	})
}

// Get reads a key; GetResponse.Kv is nil when it does not exist.
// Concurrent gets of one group and consistency share MultiGet calls (see
// coalesce.go).
func (c *Client) Get(ctx context.Context, req *metapb.GetRequest) (*metapb.GetResponse, error) {
	if c.co == nil || len(req.GetKey()) == 0 || len(req.GetKey()) > metapb.MaxKeyBytes {
		return c.getOne(ctx, laneKey{}, req)
	}
	lk := laneKey{group: c.dataGroup(ctx, req.Key), variant: int32(req.Consistency)}
	if lk.group == "" {
		return c.getOne(ctx, lk, req)
	}
	return c.co.gets.call(ctx, lk, req, 1, len(req.Key), nil)
}

// List returns one page of keys with a prefix.
func (c *Client) List(ctx context.Context, req *metapb.ListRequest) (*metapb.ListResponse, error) {
	return read(ctx, c, func(ctx context.Context, ep *endpoint) (*metapb.ListResponse, error) {
		return ep.kv.List(ctx, req)
	})
}

// CommitOffsets commits a batch of offsets. Each offset group's part is
// atomic; a batch spanning several offset groups may be partly applied only
// if the call fails with an unknown outcome. Concurrent commits to one
// offset group share calls (see coalesce.go).
func (c *Client) CommitOffsets(ctx context.Context, req *metapb.CommitOffsetsRequest) (*metapb.CommitOffsetsResponse, error) {
	names := make([]string, 0, len(req.Offsets))
	for _, o := range req.Offsets {
		names = append(names, o.GetGroup())
	}
	lk := laneKey{group: c.offsetGroup(ctx, names...)}
	if c.co == nil || lk.group == "" {
		return c.commitOne(ctx, lk, req)
	}
	return c.co.commits.call(ctx, lk, req, len(req.Offsets), offsetsBytes(req), nil)
}

// FetchOffsets reads committed offsets. Concurrent fetches from one
// offset group share calls (see coalesce.go).
func (c *Client) FetchOffsets(ctx context.Context, req *metapb.FetchOffsetsRequest) (*metapb.FetchOffsetsResponse, error) {
	if c.co == nil {
		return c.fetchOne(ctx, laneKey{}, req)
	}
	names := make([]string, 0, len(req.Partitions))
	for _, tp := range req.Partitions {
		names = append(names, tp.GetGroup())
	}
	lk := laneKey{group: c.offsetGroup(ctx, names...), variant: int32(req.Consistency)}
	if lk.group == "" {
		return c.fetchOne(ctx, lk, req)
	}
	n := 0
	for _, tp := range req.Partitions {
		n += len(tp.GetGroup()) + len(tp.GetTopic()) + 4
	}
	return c.co.fetches.call(ctx, lk, req, len(req.Partitions), n, nil)
}

// DeleteGroup removes every offset of a consumer group, atomically.
func (c *Client) DeleteGroup(ctx context.Context, req *metapb.DeleteGroupRequest) (*metapb.DeleteGroupResponse, error) {
	return routed(ctx, c, offsetKeys(req.Group), func(ctx context.Context, ep *endpoint) (*metapb.DeleteGroupResponse, error) {
		return ep.off.DeleteGroup(ctx, req)
	})
}

func (c *Client) endpoint(addr string) (*endpoint, error) {
	for _, ep := range c.endpoints() {
		if ep.addr == addr {
			return ep, nil
		}
	}
	return nil, fmt.Errorf("client: %s is not one of the client's endpoints", addr)
}

// Status returns one node's view of the cluster (no retries, no
// forwarding).
func (c *Client) Status(ctx context.Context, endpoint string) (*metapb.StatusResponse, error) {
	ep, err := c.endpoint(endpoint)
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	return ep.cl.Status(ctx, &metapb.StatusRequest{})
}

// StateHash returns one node's digest of one group's state.
func (c *Client) StateHash(ctx context.Context, endpoint, group string) (*metapb.StateHashResponse, error) {
	ep, err := c.endpoint(endpoint)
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	return ep.cl.StateHash(ctx, &metapb.StateHashRequest{Group: group})
}

// Members lists the cluster's members (a linearizable read of metadata-0).
func (c *Client) Members(ctx context.Context) (*metapb.MembersResponse, error) {
	return read(ctx, c, func(ctx context.Context, ep *endpoint) (*metapb.MembersResponse, error) {
		return ep.cl.Members(ctx, &metapb.MembersRequest{})
	})
}

// AddMember adds an empty node to the pool; the controller places
// replicas on it. Start the node with --join after.
func (c *Client) AddMember(ctx context.Context, id, addr string) (*metapb.AddMemberResponse, error) {
	return c.AddMemberInZone(ctx, id, addr, "")
}

// AddMemberInZone adds a node with a failure-domain label: replicas of a
// group are spread over zones when there are enough.
func (c *Client) AddMemberInZone(ctx context.Context, id, addr, zone string) (*metapb.AddMemberResponse, error) {
	return write(ctx, c, metapb.MetadataGroup, func(ctx context.Context, ep *endpoint) (*metapb.AddMemberResponse, error) {
		return ep.cl.AddMember(ctx, &metapb.AddMemberRequest{Id: id, Addr: addr, Zone: zone})
	})
}

// RemoveMember removes a node that holds nothing (drained) or is dead; a
// live node that still holds replicas or leaderships is refused.
func (c *Client) RemoveMember(ctx context.Context, id string) (*metapb.RemoveMemberResponse, error) {
	return c.removeMember(ctx, id, false)
}

// ForceRemoveMember removes a node whatever it holds; its replicas are
// re-created elsewhere.
func (c *Client) ForceRemoveMember(ctx context.Context, id string) (*metapb.RemoveMemberResponse, error) {
	return c.removeMember(ctx, id, true)
}

func (c *Client) removeMember(ctx context.Context, id string, force bool) (*metapb.RemoveMemberResponse, error) {
	return write(ctx, c, metapb.MetadataGroup, func(ctx context.Context, ep *endpoint) (*metapb.RemoveMemberResponse, error) {
		return ep.cl.RemoveMember(ctx, &metapb.RemoveMemberRequest{Id: id, Force: force})
	})
}

// DrainMember starts moving every replica and leadership off a node (undo:
// make it active again); ListNodes shows when it is drained.
func (c *Client) DrainMember(ctx context.Context, id string, undo bool) (*metapb.DrainMemberResponse, error) {
	return write(ctx, c, metapb.MetadataGroup, func(ctx context.Context, ep *endpoint) (*metapb.DrainMemberResponse, error) {
		return ep.cl.DrainMember(ctx, &metapb.DrainMemberRequest{Id: id, Undo: undo})
	})
}

// MoveReplica moves group's replica from node from to node to. It returns
// once the directory records the move; ListGroups shows it (moving) until
// the group's configuration follows. A group already changing is refused
// with REVISION_CONFLICT (definitely not applied): try again later.
func (c *Client) MoveReplica(ctx context.Context, group, from, to string) (*metapb.MoveReplicaResponse, error) {
	return write(ctx, c, metapb.MetadataGroup, func(ctx context.Context, ep *endpoint) (*metapb.MoveReplicaResponse, error) {
		return ep.cl.MoveReplica(ctx, &metapb.MoveReplicaRequest{Group: group, From: from, To: to})
	})
}

// SplitGroup starts an online split of a data or offset group (at: the
// route hash where the new group's range starts; 0: the middle of the
// group's widest range). It returns once the split is recorded;
// ListGroups shows it until it is done.
func (c *Client) SplitGroup(ctx context.Context, group string, at uint64) (*metapb.SplitGroupResponse, error) {
	return write(ctx, c, metapb.MetadataGroup, func(ctx context.Context, ep *endpoint) (*metapb.SplitGroupResponse, error) {
		return ep.cl.SplitGroup(ctx, &metapb.SplitGroupRequest{Group: group, At: at})
	})
}

// AbortSplit aborts the split of group under way, before its fence: it
// returns once the parent's log refuses the fence (the abort is certain;
// the new group is then deleted in the background, and ListGroups shows
// split phase "aborting" until it is). SPLIT_FENCED once the split passed
// its fence (it goes on), NOT_FOUND when none is under way.
func (c *Client) AbortSplit(ctx context.Context, group string) (*metapb.AbortSplitResponse, error) {
	return write(ctx, c, metapb.MetadataGroup, func(ctx context.Context, ep *endpoint) (*metapb.AbortSplitResponse, error) {
		return ep.cl.AbortSplit(ctx, &metapb.AbortSplitRequest{Group: group})
	})
}

// ListGroups lists every group with its replicas and leader.
func (c *Client) ListGroups(ctx context.Context) (*metapb.ListGroupsResponse, error) {
	return read(ctx, c, func(ctx context.Context, ep *endpoint) (*metapb.ListGroupsResponse, error) {
		return ep.cl.ListGroups(ctx, &metapb.ListGroupsRequest{})
	})
}

// ListNodes lists every node with its replicas, leaders and state.
func (c *Client) ListNodes(ctx context.Context) (*metapb.ListNodesResponse, error) {
	return read(ctx, c, func(ctx context.Context, ep *endpoint) (*metapb.ListNodesResponse, error) {
		return ep.cl.ListNodes(ctx, &metapb.ListNodesRequest{})
	})
}

// TransferLeader moves a group's leadership (to target, or to the best
// follower when target is empty).
func (c *Client) TransferLeader(ctx context.Context, group, target string) (*metapb.TransferLeaderResponse, error) {
	return write(ctx, c, group, func(ctx context.Context, ep *endpoint) (*metapb.TransferLeaderResponse, error) {
		return ep.cl.TransferLeader(ctx, &metapb.TransferLeaderRequest{Group: group, TargetId: target})
	})
}

// Alarms lists the cluster's raised alarms (NOSPACE: writes that take
// space are refused).
func (c *Client) Alarms(ctx context.Context) (*metapb.AlarmsResponse, error) {
	return read(ctx, c, func(ctx context.Context, ep *endpoint) (*metapb.AlarmsResponse, error) {
		return ep.cl.Alarms(ctx, &metapb.AlarmsRequest{})
	})
}

// DisarmAlarm clears alarm (empty: NOSPACE) of member (empty: every
// member) and lists the alarms left. Free space first: a member still past
// its limit raises the alarm again.
func (c *Client) DisarmAlarm(ctx context.Context, alarm, member string) (*metapb.AlarmsResponse, error) {
	return write(ctx, c, metapb.MetadataGroup, func(ctx context.Context, ep *endpoint) (*metapb.AlarmsResponse, error) {
		return ep.cl.Alarms(ctx, &metapb.AlarmsRequest{Disarm: true, Alarm: alarm, Member: member})
	})
}
