package client

import (
	"context"
	"time"

	"github.com/metamq/meta/rpc/metapb"
)

// followDirectory follows the cluster's directory from any node until ctx
// ends: members become endpoints (those gone are skipped), and each
// group's replicas and leader (as the answering node knows it) steer
// writes. A node too old to serve the directory leaves the client as it
// was (Status still teaches it leaders).
func (c *Client) followDirectory(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		ep := c.next()
		if c.ready(ctx, ep) {
			stream, err := ep.cl.WatchDirectory(ctx, &metapb.WatchDirectoryRequest{})
			if err == nil {
				for {
					u, err := stream.Recv()
					if err != nil {
						break
					}
					attempt = 0
					if c.configuredIDsUnknown() {
						// Learn which node each configured endpoint
						// reaches before member addresses take over.
						c.refresh(ctx)
					}
					c.learnDirectory(u)
				}
			}
		}
		if sleepBackoff(ctx, attempt) != nil {
			return
		}
	}
}

// learnDirectory takes one directory update.
func (c *Client) learnDirectory(u *metapb.DirectoryUpdate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	members, ids := map[string]bool{}, map[string]bool{}
	for _, m := range u.Members {
		ids[m.Id] = true
		if ep := c.byID[m.Id]; ep != nil && ep.configured && ep.addr != m.Addr {
			continue // reached by its configured address
		}
		ep, err := c.addEndpoint(m.Addr)
		if err != nil {
			continue
		}
		ep.nodeID = m.Id
		c.byID[m.Id] = ep
		members[m.Addr] = true
	}
	for _, ep := range c.endpoints() {
		switch {
		case len(ids) == 0:
			ep.gone.Store(false)
		case ep.nodeID != "":
			// Gone when its node left, or when the node is reached by
			// another (configured) endpoint.
			ep.gone.Store(!ids[ep.nodeID] || c.byID[ep.nodeID] != ep)
		case ep.configured:
			ep.gone.Store(false) // its node is not known yet
		default:
			ep.gone.Store(!members[ep.addr])
		}
	}
	if u.DataGroups > 0 {
		c.k, c.m = int(u.OffsetGroups), int(u.DataGroups)
	}
	// A map taken from a WRONG_GROUP answer may be newer than this update.
	if u.Version >= c.dataVersion {
		c.dataRanges, c.dataVersion = rangeMaps(u.Groups, "data"), u.Version
	}
	if u.Version >= c.offsetVersion {
		c.offsetRanges, c.offsetVersion = rangeMaps(u.Groups, "offset"), u.Version
	}
	for _, g := range u.Groups {
		c.replicas[g.Group] = g.Replicas
		if g.Leader != "" {
			c.leaders[g.Group] = g.Leader
		}
	}
	c.learned = time.Now()
}

// configuredIDsUnknown reports whether some configured endpoint's node is
// not known yet.
func (c *Client) configuredIDsUnknown() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ep := range c.endpoints() {
		if ep.configured && ep.nodeID == "" {
			return true
		}
	}
	return false
}

// rangeMaps returns the range map of one kind of group in a directory
// update, or nil when its groups carry no ranges (the cluster routes by
// Shard) or they do not tile the hash space (then Shard routing, and the
// servers' WRONG_GROUP answers, steer requests).
func rangeMaps(groups []*metapb.DirectoryGroup, kind string) metapb.RangeMap {
	var m metapb.RangeMap
	for _, g := range groups {
		if g.Kind != kind {
			continue
		}
		for _, r := range g.Ranges {
			m = append(m, metapb.Range{Lo: r.Lo, Hi: r.Hi, Group: g.Group, Version: r.Version})
		}
	}
	return m.Sorted()
}
