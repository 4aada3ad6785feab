package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

// metaConn drives a meta cluster through the public client: writes go to
// the owning group's leader, reads are spread over the endpoints.
type metaConn struct {
	c *client.Client
}

var _ targetConn = (*metaConn)(nil)

func openMeta(cfg dialConfig) (conn, error) {
	c, err := client.New(client.Config{
		Endpoints:      cfg.endpoints,
		RequestTimeout: cfg.timeout,
		Logger:         cfg.log,
		TLS:            cfg.tls,
		Token:          cfg.token,
		NoCoalesce:     cfg.noCoalesce,
	})
	if err != nil {
		return nil, err
	}
	return &metaConn{c: c}, nil
}

func (m *metaConn) Close() error { return m.c.Close() }

func (m *metaConn) unknown(err error) bool { return client.IsUnknown(err) }

// ping reads the member list (a linearizable read of metadata-0, so the
// cluster has formed and serves) and then asks every endpoint for its
// status, which makes each connection ready. A node that does not answer
// is tolerated: the client routes around it, as it would for a broker.
func (m *metaConn) ping(ctx context.Context) error {
	if _, err := m.c.Members(ctx); err != nil {
		return fmt.Errorf("meta cluster at %v does not serve: %w", m.c.Endpoints(), err)
	}
	var answered int
	var errs []error
	for _, ep := range m.c.Endpoints() {
		if _, err := m.c.Status(ctx, ep); err != nil {
			errs = append(errs, err)
			continue
		}
		answered++
	}
	if answered == 0 {
		return fmt.Errorf("no endpoint answered Status: %w", errors.Join(errs...))
	}
	return nil
}

func (m *metaConn) put(ctx context.Context, key, value []byte) error {
	_, err := m.c.Put(ctx, &metapb.PutRequest{Key: key, Value: value})
	return err
}

func (m *metaConn) get(ctx context.Context, key []byte, stale bool) (bool, error) {
	req := &metapb.GetRequest{Key: key}
	if stale {
		req.Consistency = metapb.ReadConsistency_READ_CONSISTENCY_STALE
	}
	resp, err := m.c.Get(ctx, req)
	if err != nil {
		return false, err
	}
	return resp.Kv != nil, nil
}

func (m *metaConn) commitOffsets(ctx context.Context, offsets []offsetCommit) error {
	req := &metapb.CommitOffsetsRequest{Offsets: make([]*metapb.OffsetCommit, len(offsets))}
	for i, o := range offsets {
		req.Offsets[i] = &metapb.OffsetCommit{Group: o.group, Topic: o.topic, Partition: o.partition, Offset: o.offset}
	}
	_, err := m.c.CommitOffsets(ctx, req)
	return err
}

func (m *metaConn) fetchOffsets(ctx context.Context, partitions []offsetCommit, stale bool) (int, error) {
	req := &metapb.FetchOffsetsRequest{Partitions: make([]*metapb.TopicPartition, len(partitions))}
	for i, o := range partitions {
		req.Partitions[i] = &metapb.TopicPartition{Group: o.group, Topic: o.topic, Partition: o.partition}
	}
	if stale {
		req.Consistency = metapb.ReadConsistency_READ_CONSISTENCY_STALE
	}
	resp, err := m.c.FetchOffsets(ctx, req)
	if err != nil {
		return 0, err
	}
	found := 0
	for _, v := range resp.Offsets {
		if v.Found {
			found++
		}
	}
	return found, nil
}

// putSessions is one PutSessions call; the server splits it by data group
// and applies each group's part atomically.
func (m *metaConn) putSessions(ctx context.Context, sessions []session) error {
	req := &metapb.PutSessionsRequest{Sessions: make([]*metapb.Session, len(sessions))}
	for i, s := range sessions {
		req.Sessions[i] = &metapb.Session{ClientId: s.clientID, BrokerId: s.brokerID, Connected: s.connected,
			ExpiryIntervalSeconds: s.expirySeconds, State: s.state}
	}
	_, err := m.c.PutSessions(ctx, req)
	return err
}

func (m *metaConn) listSessions(ctx context.Context, startAfter string, limit int, stale bool) (sessionPage, error) {
	req := &metapb.ListSessionsRequest{StartAfter: startAfter, Limit: uint32(limit)}
	if stale {
		req.Consistency = metapb.ReadConsistency_READ_CONSISTENCY_STALE
	}
	resp, err := m.c.ListSessions(ctx, req)
	if err != nil {
		return sessionPage{}, err
	}
	page := sessionPage{ids: make([]string, len(resp.Sessions)), more: resp.More, next: resp.NextStartAfter}
	for i, s := range resp.Sessions {
		page.ids[i] = s.ClientId
	}
	return page, nil
}
