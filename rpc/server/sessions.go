package server

import (
	"context"
	"fmt"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
	"google.golang.org/protobuf/proto"
)

// sessionsService serves MQTT sessions from the data groups, routed by
// client id (metapb.DataGroupFor(client id)).
type sessionsService struct {
	metapb.UnimplementedSessionsServer
	s *Server
}

func checkClientID(field, id string) error {
	return checkRequired(field, id, metapb.MaxClientIDBytes)
}

func checkBrokerID(field, id string, required bool) error {
	if required {
		return checkRequired(field, id, metapb.MaxBrokerIDBytes)
	}
	return checkMaxBytes(field, id, metapb.MaxBrokerIDBytes)
}

func checkStartAfter(v string, maxBytes int) error {
	return checkMaxBytes("start_after", v, maxBytes)
}

func toSession(s *logpb.Session) *metapb.Session {
	if s == nil {
		return nil
	}
	return &metapb.Session{ClientId: s.ClientId, BrokerId: s.BrokerId, Connected: s.Connected,
		ExpiryIntervalSeconds: s.ExpiryIntervalSeconds, State: s.State,
		DisconnectedAtUnixNano: s.DisconnectedAtUnixNano, ExpiresAtUnixNano: s.ExpiresAtUnixNano,
		CreateRevision: s.CreateRevision, ModRevision: s.ModRevision, Version: s.Version, BrokerEpoch: s.BrokerEpoch}
}

// Put creates or replaces sessions. The batch is split by data group, one
// op (one raft entry's part, atomic) per group, the parts proposed
// concurrently. A client id may appear once per call (its two entries
// would otherwise race inside one op). Server-set fields (times,
// revisions) are ignored.
func (ss *sessionsService) Put(ctx context.Context, req *metapb.PutSessionsRequest) (*metapb.PutSessionsResponse, error) {
	n := len(req.Sessions)
	if err := checkBatchLen("sessions", n, metapb.MaxBatchEntries); err != nil {
		return nil, err
	}
	seen := make(map[string]int, n)
	total := 0
	for i, se := range req.Sessions {
		f := fmt.Sprintf("sessions[%d]", i)
		if se == nil {
			return nil, invalid(f, "must be set")
		}
		if err := firstErr(checkClientID(f+".client_id", se.ClientId), checkBrokerID(f+".broker_id", se.BrokerId, false),
			checkBrokerID(f+".if_broker_id", se.IfBrokerId, false)); err != nil {
			return nil, err
		}
		if j, dup := seen[se.ClientId]; dup {
			return nil, invalid(f+".client_id", "%q repeats sessions[%d]", se.ClientId, j)
		}
		seen[se.ClientId] = i
		if err := checkMaxBytes(f+".state", se.State, metapb.MaxSessionStateBytes); err != nil {
			return nil, err
		}
		total += len(se.ClientId) + len(se.BrokerId) + len(se.State) + 16
	}
	if total > metapb.MaxBatchBytes {
		return nil, invalid("sessions", "%d bytes, at most %d", total, metapb.MaxBatchBytes)
	}
	s := ss.s
	parts, err := s.proposeParts(ctx, n, func(r *metapb.Router, i int) string { return r.DataGroup([]byte(req.Sessions[i].ClientId)) },
		func(_ string, idx []int) *logpb.Op {
			puts := make([]*logpb.SessionPut, len(idx))
			for j, i := range idx {
				se := req.Sessions[i]
				puts[j] = &logpb.SessionPut{ClientId: se.ClientId, BrokerId: se.BrokerId, Connected: se.Connected,
					ExpiryIntervalSeconds: se.ExpiryIntervalSeconds, State: se.State,
					IfBrokerId: se.IfBrokerId, KeepState: se.KeepState,
					BrokerEpoch: se.BrokerEpoch, IfBrokerEpochAtMost: se.IfBrokerEpochAtMost, DeleteWill: se.DeleteWill}
			}
			return &logpb.Op{Op: &logpb.Op_SessionsPut{SessionsPut: &logpb.SessionsPut{Sessions: puts, ReturnPrevious: req.ReturnPrevious}}}
		})
	if err != nil {
		return nil, err
	}
	if err := s.batchResultError(parts, "sessions"); err != nil {
		return nil, err
	}
	out := &metapb.PutSessionsResponse{Revisions: make([]uint64, n), Groups: uint32(partGroups(parts)), Applied: make([]bool, n)}
	if req.ReturnPrevious {
		out.Previous = make([]*metapb.Session, n)
	}
	for _, p := range parts {
		r := p.res
		for j, i := range p.idx {
			out.Revisions[i] = r.Revision
			// A node of the previous release reports no applied flags:
			// it ignored the conditions, so everything applied.
			out.Applied[i] = j >= len(r.Applied) || r.Applied[j]
			if out.Previous == nil {
				continue
			}
			out.Previous[i] = &metapb.Session{}
			if j < len(r.PrevValues) && len(r.PrevValues[j]) > 0 {
				var prev logpb.Session
				if err := proto.Unmarshal(r.PrevValues[j], &prev); err != nil {
					return nil, s.statusOf(fmt.Errorf("server: decode previous session: %w", err), true)
				}
				out.Previous[i] = toSession(&prev)
			}
		}
	}
	return out, nil
}

// batchResultError turns a batch's per-group outcomes into the call's
// error: node errors through batchError; a result that is not OK (the
// state machine refused a part the server validated: a bug) as
// InvalidArgument, or as an unknown outcome when other parts applied.
func (s *Server) batchResultError(parts []*part, field string) error {
	if err := s.batchError(partErrs(parts)); err != nil {
		return err
	}
	for _, p := range parts {
		if r := p.res; r.Code != logpb.Code_CODE_OK {
			if len(parts) > 1 {
				return s.statusOf(fmt.Errorf("server: one part of the batch was refused (%s: %s), others applied", r.Code, r.Message), true)
			}
			return invalidArgument(field, field+": "+r.Message)
		}
	}
	return nil
}

// Delete deletes sessions, split by data group like Put; deleted[i] says
// whether client_ids[i] had a session.
func (ss *sessionsService) Delete(ctx context.Context, req *metapb.DeleteSessionsRequest) (*metapb.DeleteSessionsResponse, error) {
	n := len(req.ClientIds)
	if err := checkBatchLen("client_ids", n, metapb.MaxBatchEntries); err != nil {
		return nil, err
	}
	for i, id := range req.ClientIds {
		if err := checkClientID(fmt.Sprintf("client_ids[%d]", i), id); err != nil {
			return nil, err
		}
	}
	s := ss.s
	parts, err := s.proposeParts(ctx, n, func(r *metapb.Router, i int) string { return r.DataGroup([]byte(req.ClientIds[i])) },
		func(_ string, idx []int) *logpb.Op {
			ids := make([]string, len(idx))
			for j, i := range idx {
				ids[j] = req.ClientIds[i]
			}
			return &logpb.Op{Op: &logpb.Op_SessionsDelete{SessionsDelete: &logpb.SessionsDelete{ClientIds: ids}}}
		})
	if err != nil {
		return nil, err
	}
	if err := s.batchResultError(parts, "client_ids"); err != nil {
		return nil, err
	}
	out := &metapb.DeleteSessionsResponse{Deleted: make([]bool, n)}
	for _, p := range parts {
		flags := p.res.Flags
		for j, i := range p.idx {
			out.Deleted[i] = j < len(flags) && flags[j]
		}
	}
	return out, nil
}

// Get reads one session; the response's session is unset when there is
// none.
func (ss *sessionsService) Get(ctx context.Context, req *metapb.GetSessionRequest) (*metapb.GetSessionResponse, error) {
	return getByKey(ctx, ss.s, "client_id", req.ClientId, checkClientID, req.Consistency, state.Reader.Session,
		func(se *logpb.Session) *metapb.GetSessionResponse {
			return &metapb.GetSessionResponse{Session: toSession(se)}
		})
}

// List pages through sessions in client id order, merged over the data
// groups (each group's part a read of its own).
func (ss *sessionsService) List(ctx context.Context, req *metapb.ListSessionsRequest) (*metapb.ListSessionsResponse, error) {
	if err := firstErr(checkStartAfter(req.StartAfter, metapb.MaxClientIDBytes), checkLimit(req.Limit),
		checkConsistency(req.Consistency), checkBrokerID("broker_id", req.BrokerId, false)); err != nil {
		return nil, err
	}
	limit := listLimit(req.Limit)
	page, more, next, err := listPage(ctx, ss.s, req.Consistency, req, limit, func(_ string, m state.Reader) ([]*logpb.Session, bool, error) {
		return m.Sessions(req.StartAfter, limit, req.BrokerId)
	}, toSession, (*metapb.ListSessionsResponse).GetSessions, (*metapb.Session).GetClientId)
	if err != nil {
		return nil, err
	}
	return &metapb.ListSessionsResponse{More: more, Sessions: page, NextStartAfter: next}, nil
}
