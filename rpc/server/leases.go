package server

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
	"google.golang.org/protobuf/proto"
)

// leasesService serves leases. Every data group holds a replica of every
// lease, so that a KV put with a lease is checked atomically in the key's
// own group: Grant, KeepAlive and Revoke propose to every data group,
// concurrently, and succeed only when every group applied them. If some
// groups applied and others failed, the outcome is unknown (batchError).
type leasesService struct {
	metapb.UnimplementedLeasesServer
	s *Server
}

func checkLeaseID(field string, id int64, zeroOK bool) error {
	if id < 0 || (id == 0 && !zeroOK) {
		return invalid(field, "%d, must be positive", id)
	}
	return nil
}

func leaseSubject(id int64) string { return fmt.Sprintf("lease %d", id) }

// everyGroup proposes op to every data group and returns their results
// (in group order) once all applied; a node error in any group makes the
// call fail as batchError says.
func (s *Server) everyGroup(ctx context.Context, op *logpb.Op) ([]*logpb.Result, error) {
	groups, err := s.dataGroups()
	if err != nil {
		return nil, err
	}
	results, errs := s.proposeEach(ctx, groups, func(int, string) *logpb.Op { return op })
	if err := s.batchError(errs); err != nil {
		return nil, err
	}
	return results, nil
}

// combined folds the groups' results of a lease op into one: OK if every
// group applied it; NOT_FOUND if any group lacked the lease (it expired
// or was revoked there, so its keys there are gone: the lease as a whole
// is gone); otherwise the first other code.
func combined(results []*logpb.Result) *logpb.Result {
	var notFound, other *logpb.Result
	for _, r := range results {
		switch r.Code {
		case logpb.Code_CODE_OK:
		case logpb.Code_CODE_NOT_FOUND:
			if notFound == nil {
				notFound = r
			}
		default:
			if other == nil {
				other = r
			}
		}
	}
	switch {
	case other != nil:
		return other
	case notFound != nil:
		return notFound
	}
	return &logpb.Result{}
}

// Grant creates a lease in every data group; id 0 picks a random positive
// id. Granting an existing id with the same TTL again renews it (safe to
// retry); with another TTL it fails with AlreadyExists.
func (ls *leasesService) Grant(ctx context.Context, req *metapb.LeaseGrantRequest) (*metapb.LeaseGrantResponse, error) {
	if req.TtlSeconds < 1 || req.TtlSeconds > metapb.MaxLeaseTTLSeconds {
		return nil, invalid("ttl_seconds", "%d, must be in 1..%d", req.TtlSeconds, metapb.MaxLeaseTTLSeconds)
	}
	if err := checkLeaseID("id", req.Id, true); err != nil {
		return nil, err
	}
	id := req.Id
	if id == 0 {
		id = rand.Int64N(math.MaxInt64) + 1
	}
	results, err := ls.s.everyGroup(ctx, &logpb.Op{Op: &logpb.Op_LeaseGrant{LeaseGrant: &logpb.LeaseGrant{Id: id, TtlSeconds: req.TtlSeconds}}})
	if err != nil {
		return nil, err
	}
	if err := resultError(combined(results), leaseSubject(id), "id", 0); err != nil {
		return nil, err
	}
	return &metapb.LeaseGrantResponse{Id: id, TtlSeconds: req.TtlSeconds}, nil
}

// KeepAlive renews a lease by its TTL in every data group; NotFound when
// it is gone (expired or revoked) in any of them.
func (ls *leasesService) KeepAlive(ctx context.Context, req *metapb.LeaseKeepAliveRequest) (*metapb.LeaseKeepAliveResponse, error) {
	if err := checkLeaseID("id", req.Id, false); err != nil {
		return nil, err
	}
	s := ls.s
	results, err := s.everyGroup(ctx, &logpb.Op{Op: &logpb.Op_LeaseKeepAlive{LeaseKeepAlive: &logpb.LeaseKeepAlive{Id: req.Id}}})
	if err != nil {
		return nil, err
	}
	if err := resultError(combined(results), leaseSubject(req.Id), "id", 0); err != nil {
		return nil, err
	}
	// The result does not carry the TTL; a lease's TTL never changes while
	// it exists, so a read of data-0 after the renewal gives it.
	m, err := s.read(ctx, metapb.DataGroup(0), metapb.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE)
	if err != nil {
		return nil, err
	}
	l, err := m.Lease(req.Id)
	if err != nil {
		return nil, s.statusOf(err, false)
	}
	if l == nil {
		// Expired between the renewal and the read.
		return nil, resultError(&logpb.Result{Code: logpb.Code_CODE_NOT_FOUND}, leaseSubject(req.Id), "id", 0)
	}
	return &metapb.LeaseKeepAliveResponse{Id: req.Id, TtlSeconds: l.TtlSeconds}, nil
}

// Revoke deletes a lease and its keys in every data group; NotFound when
// no group had it.
func (ls *leasesService) Revoke(ctx context.Context, req *metapb.LeaseRevokeRequest) (*metapb.LeaseRevokeResponse, error) {
	if err := checkLeaseID("id", req.Id, false); err != nil {
		return nil, err
	}
	results, err := ls.s.everyGroup(ctx, &logpb.Op{Op: &logpb.Op_LeaseRevoke{LeaseRevoke: &logpb.LeaseRevoke{Id: req.Id}}})
	if err != nil {
		return nil, err
	}
	var deleted uint64
	found := false
	for _, r := range results {
		switch r.Code {
		case logpb.Code_CODE_OK:
			found = true
			deleted += r.Count
		case logpb.Code_CODE_NOT_FOUND:
		default:
			return nil, resultError(r, leaseSubject(req.Id), "id", 0)
		}
	}
	if !found {
		return nil, resultError(&logpb.Result{Code: logpb.Code_CODE_NOT_FOUND}, leaseSubject(req.Id), "id", 0)
	}
	return &metapb.LeaseRevokeResponse{Deleted: deleted}, nil
}

// TimeToLive reports a lease's remaining time by the node's clock, from a
// linearizable read of data-0, and with keys set the keys attached to it
// in every data group (at most MaxLeaseKeys). ttl_seconds is -1 when the
// lease does not exist, 0 when it is past its expiry but its group's
// leader has not expired it yet.
func (ls *leasesService) TimeToLive(ctx context.Context, req *metapb.LeaseTimeToLiveRequest) (*metapb.LeaseTimeToLiveResponse, error) {
	if err := checkLeaseID("id", req.Id, false); err != nil {
		return nil, err
	}
	s := ls.s
	// Every data group holds the lease (grants fan out to all of them);
	// a call restricted to one group reads it there.
	first := metapb.DataGroup(0)
	if g := restrictedTo(ctx); g != "" {
		first = g
	}
	m, err := s.read(ctx, first, metapb.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE)
	if err != nil {
		return nil, err
	}
	l, err := m.Lease(req.Id)
	if err != nil {
		return nil, s.statusOf(err, false)
	}
	out := &metapb.LeaseTimeToLiveResponse{Id: req.Id, TtlSeconds: -1}
	if l == nil {
		return out, nil
	}
	left := time.Duration(l.ExpiresAtUnixNano - s.node.Now().UnixNano())
	out.TtlSeconds = max(int64((left+time.Second-1)/time.Second), 0)
	out.GrantedTtlSeconds = l.TtlSeconds
	if !req.Keys {
		return out, nil
	}
	groups, err := s.dataGroups()
	if err == nil {
		groups, err = s.groupsFor(ctx, groups)
	}
	if err != nil {
		return nil, err
	}
	for _, g := range groups {
		room := metapb.MaxLeaseKeys - len(out.Keys)
		if room <= 0 {
			break
		}
		err := s.inGroup(ctx, g, metapb.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE, req,
			func(gm state.Reader) error {
				keys, err := gm.LeaseKeys(req.Id, room)
				if err != nil {
					return s.statusOf(err, false)
				}
				out.Keys = append(out.Keys, keys...)
				return nil
			},
			func(resp proto.Message) error {
				keys := resp.(*metapb.LeaseTimeToLiveResponse).Keys
				out.Keys = append(out.Keys, keys[:min(len(keys), room)]...)
				return nil
			})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
