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
	members := map[string]bool{}
	for _, m := range u.Members {
		ep, err := c.addEndpoint(m.Addr)
		if err != nil {
			continue
		}
		ep.nodeID = m.Id
		ep.gone.Store(false)
		c.byID[m.Id] = ep
		members[m.Addr] = true
	}
	for _, ep := range c.endpoints() {
		ep.gone.Store(len(members) > 0 && !members[ep.addr])
	}
	if u.DataGroups > 0 {
		c.k, c.m = int(u.OffsetGroups), int(u.DataGroups)
	}
	for _, g := range u.Groups {
		c.replicas[g.Group] = g.Replicas
		if g.Leader != "" {
			c.leaders[g.Group] = g.Leader
		}
	}
	c.learned = time.Now()
}
