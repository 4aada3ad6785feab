package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/metapb"
)

// etcdConn drives an etcd cluster with etcd's own Go client, which spreads
// requests over the endpoints round-robin (followers forward writes to the
// leader), as etcd's benchmark tool does.
type etcdConn struct {
	c *clientv3.Client
}

var _ targetConn = (*etcdConn)(nil)

// etcdSessionPrefix prefixes the key of a session on etcd; the value is
// the session encoded as meta's metapb.Session, so both targets store
// the same bytes per session.
const etcdSessionPrefix = "sessions/"

func openEtcd(cfg dialConfig) (conn, error) {
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.endpoints,
		DialTimeout: cfg.timeout,
		// etcd's client logs through zap; its messages would interleave
		// with the report, and errors reach us as return values anyway.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return &etcdConn{c: c}, nil
}

func (e *etcdConn) Close() error { return e.c.Close() }

// unknown: etcd does not say whether a failed write was applied. A write
// that timed out, was cancelled, or whose connection or leader went away
// may have been; errors the server returns before proposing (invalid
// request, quota exceeded, too many requests) are definite.
func (e *etcdConn) unknown(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	code := codes.Unknown
	if ee, ok := errors.AsType[rpctypes.EtcdError](err); ok {
		code = ee.Code()
	} else if st, ok := status.FromError(err); ok {
		code = st.Code()
	}
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Unknown, codes.Internal, codes.Aborted:
		return true
	}
	return false
}

// ping asks every endpoint for its status, which also makes the
// connections ready.
func (e *etcdConn) ping(ctx context.Context) error {
	var answered int
	var errs []error
	for _, ep := range e.c.Endpoints() {
		if _, err := e.c.Status(ctx, ep); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ep, err))
			continue
		}
		answered++
	}
	if answered == 0 {
		return fmt.Errorf("etcd cluster at %v does not serve: %w", e.c.Endpoints(), errors.Join(errs...))
	}
	return nil
}

func (e *etcdConn) put(ctx context.Context, key, value []byte) error {
	_, err := e.c.Put(ctx, string(key), string(value))
	return err
}

func (e *etcdConn) get(ctx context.Context, key []byte, stale bool) (bool, error) {
	var opts []clientv3.OpOption
	if stale {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := e.c.Get(ctx, string(key), opts...)
	if err != nil {
		return false, err
	}
	return len(resp.Kvs) > 0, nil
}

// commitOffsets writes the batch as one transaction of puts, one key per
// (consumer group, topic, partition), so that it is atomic like meta's.
func (e *etcdConn) commitOffsets(ctx context.Context, offsets []offsetCommit) error {
	ops := make([]clientv3.Op, len(offsets))
	for i, o := range offsets {
		ops[i] = clientv3.OpPut(etcdOffsetKey(o), strconv.FormatInt(o.offset, 10))
	}
	_, err := e.c.Txn(ctx).Then(ops...).Commit()
	return err
}

// etcdOffsetKey is the key of one (consumer group, topic, partition).
func etcdOffsetKey(o offsetCommit) string {
	return "offsets/" + o.group + "/" + o.topic + "/" + strconv.Itoa(int(o.partition))
}

// fetchOffsets reads the batch in one transaction of gets (serializable
// gets for stale), one snapshot like meta's fetch.
func (e *etcdConn) fetchOffsets(ctx context.Context, partitions []offsetCommit, stale bool) (int, error) {
	var opts []clientv3.OpOption
	if stale {
		opts = append(opts, clientv3.WithSerializable())
	}
	ops := make([]clientv3.Op, len(partitions))
	for i, o := range partitions {
		ops[i] = clientv3.OpGet(etcdOffsetKey(o), opts...)
	}
	resp, err := e.c.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return 0, err
	}
	found := 0
	for _, r := range resp.Responses {
		if len(r.GetResponseRange().GetKvs()) > 0 {
			found++
		}
	}
	return found, nil
}

// putSessions writes the batch as one transaction of puts, atomic like
// meta's per-group parts. etcd refuses a transaction of more than
// --max-txn-ops operations (128 by default) as a definite failure.
func (e *etcdConn) putSessions(ctx context.Context, sessions []session) error {
	ops := make([]clientv3.Op, len(sessions))
	for i, s := range sessions {
		v, err := proto.Marshal(&metapb.Session{ClientId: s.clientID, BrokerId: s.brokerID, Connected: s.connected,
			ExpiryIntervalSeconds: s.expirySeconds, State: s.state})
		if err != nil {
			return err
		}
		ops[i] = clientv3.OpPut(etcdSessionPrefix+s.clientID, string(v))
	}
	_, err := e.c.Txn(ctx).Then(ops...).Commit()
	return err
}

// listSessions is a range read of the session keys after startAfter
// (the key followed by a zero byte is the first one after it), limited
// to limit keys, without the values.
func (e *etcdConn) listSessions(ctx context.Context, startAfter string, limit int, stale bool) (sessionPage, error) {
	opts := []clientv3.OpOption{
		clientv3.WithRange(clientv3.GetPrefixRangeEnd(etcdSessionPrefix)),
		clientv3.WithLimit(int64(limit)),
		clientv3.WithKeysOnly(),
	}
	if stale {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := e.c.Get(ctx, etcdSessionPrefix+startAfter+"\x00", opts...)
	if err != nil {
		return sessionPage{}, err
	}
	page := sessionPage{ids: make([]string, len(resp.Kvs)), more: resp.More}
	for i, kv := range resp.Kvs {
		page.ids[i] = strings.TrimPrefix(string(kv.Key), etcdSessionPrefix)
	}
	if page.more && len(page.ids) > 0 {
		page.next = page.ids[len(page.ids)-1]
	}
	return page, nil
}
