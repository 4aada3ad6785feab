package server

import (
	"context"
	"fmt"
	"strings"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// willsService serves will messages from the data groups, routed by
// client id like sessions (a client's session and will share a group).
type willsService struct {
	metapb.UnimplementedWillsServer
	s *Server
}

// checkTopicName checks an MQTT topic name: 1..MaxTopicBytes, no
// wildcards, no NUL.
func checkTopicName(field, topic string) error {
	if err := checkRequired(field, topic, metapb.MaxTopicBytes); err != nil {
		return err
	}
	if i := strings.IndexAny(topic, "+#\x00"); i >= 0 {
		return invalid(field, "byte %d (%q): a topic name has no wildcards and no NUL", i, topic[i])
	}
	return nil
}

func checkMessage(prefix string, payload, properties []byte, qos uint32) error {
	switch {
	case len(payload) > metapb.MaxPayloadBytes:
		return invalid(prefix+"payload", "%d bytes, at most %d", len(payload), metapb.MaxPayloadBytes)
	case len(properties) > metapb.MaxPropertiesBytes:
		return invalid(prefix+"properties", "%d bytes, at most %d", len(properties), metapb.MaxPropertiesBytes)
	case qos > metapb.MaxQoS:
		return invalid(prefix+"qos", "%d, at most %d", qos, metapb.MaxQoS)
	}
	return nil
}

func toWill(w *logpb.Will) *metapb.Will {
	if w == nil {
		return nil
	}
	return &metapb.Will{ClientId: w.ClientId, Topic: w.Topic, Payload: w.Payload, Qos: w.Qos, Retain: w.Retain,
		DelaySeconds: w.DelaySeconds, Properties: w.Properties, State: metapb.WillState(w.State),
		DueAtUnixNano: w.DueAtUnixNano, ClaimedBy: w.ClaimedBy, ClaimExpiresAtUnixNano: w.ClaimExpiresAtUnixNano,
		ModRevision: w.ModRevision}
}

// decodeWill decodes a stored will encoding; nil for an empty one.
func decodeWill(raw []byte) (*metapb.Will, error) {
	return decodeStored(raw, "will", func(w *logpb.Will) (*metapb.Will, error) { return toWill(w), nil })
}

func willSubject(clientID string) string { return fmt.Sprintf("will of client %q", clientID) }

// Put sets a client's will.
func (ws *willsService) Put(ctx context.Context, req *metapb.PutWillRequest) (*metapb.PutWillResponse, error) {
	w := req.Will
	if w == nil {
		return nil, invalid("will", "must be set")
	}
	if err := firstErr(checkClientID("will.client_id", w.ClientId), checkTopicName("will.topic", w.Topic),
		checkMessage("will.", w.Payload, w.Properties, w.Qos)); err != nil {
		return nil, err
	}
	s := ws.s
	res, err := s.proposeData(ctx, []byte(w.ClientId), &logpb.Op{Op: &logpb.Op_WillPut{WillPut: &logpb.WillPut{
		ClientId: w.ClientId, Topic: w.Topic, Payload: w.Payload, Qos: w.Qos, Retain: w.Retain,
		DelaySeconds: w.DelaySeconds, Properties: w.Properties}}})
	if err != nil {
		return nil, err
	}
	if err := resultError(res, willSubject(w.ClientId), "will.client_id", 0); err != nil {
		return nil, err
	}
	out, err := decodeWill(res.Value)
	if err != nil {
		return nil, s.statusOf(err, false)
	}
	return &metapb.PutWillResponse{Will: out}, nil
}

// Delete deletes a client's will; deleted is false when there was none.
func (ws *willsService) Delete(ctx context.Context, req *metapb.DeleteWillRequest) (*metapb.DeleteWillResponse, error) {
	if err := checkClientID("client_id", req.ClientId); err != nil {
		return nil, err
	}
	s := ws.s
	res, err := s.proposeData(ctx, []byte(req.ClientId), &logpb.Op{Op: &logpb.Op_WillDelete{WillDelete: &logpb.WillDelete{ClientId: req.ClientId}}})
	if err != nil {
		return nil, err
	}
	return &metapb.DeleteWillResponse{Deleted: res.Code == logpb.Code_CODE_OK}, nil
}

// Get reads a client's will; unset when there is none.
func (ws *willsService) Get(ctx context.Context, req *metapb.GetWillRequest) (*metapb.GetWillResponse, error) {
	return getByKey(ctx, ws.s, "client_id", req.ClientId, checkClientID, req.Consistency, state.Reader.Will,
		func(w *logpb.Will) *metapb.GetWillResponse { return &metapb.GetWillResponse{Will: toWill(w)} })
}

// ListDue lists wills that are due at the node's clock (or whose claim
// expired), merged over every data group in client id order; each group's
// part is a linearizable read.
func (ws *willsService) ListDue(ctx context.Context, req *metapb.ListDueWillsRequest) (*metapb.ListDueWillsResponse, error) {
	if err := firstErr(checkStartAfter(req.StartAfter, metapb.MaxClientIDBytes), checkLimit(req.Limit)); err != nil {
		return nil, err
	}
	limit := listLimit(req.Limit)
	now := ws.s.node.Now().UnixNano()
	page, more, next, err := listPage(ctx, ws.s, metapb.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE, req, limit,
		func(_ string, m state.Reader) ([]*logpb.Will, bool, error) {
			return m.DueWills(now, req.StartAfter, limit)
		}, toWill, (*metapb.ListDueWillsResponse).GetWills, (*metapb.Will).GetClientId)
	if err != nil {
		return nil, err
	}
	return &metapb.ListDueWillsResponse{More: more, Wills: page, NextStartAfter: next}, nil
}

// Claim claims a due will for one broker through raft: of brokers racing,
// exactly one gets claimed=true; the others get claimed=false and the will
// as it is (claimed by the winner). NotFound when the client has no will.
func (ws *willsService) Claim(ctx context.Context, req *metapb.ClaimWillRequest) (*metapb.ClaimWillResponse, error) {
	errs := []error{checkClientID("client_id", req.ClientId), checkBrokerID("broker_id", req.BrokerId, true)}
	if req.ClaimTtlSeconds > metapb.MaxClaimTTLSeconds {
		errs = append(errs, invalid("claim_ttl_seconds", "%d, at most %d", req.ClaimTtlSeconds, metapb.MaxClaimTTLSeconds))
	}
	if err := firstErr(errs...); err != nil {
		return nil, err
	}
	s := ws.s
	res, err := s.proposeData(ctx, []byte(req.ClientId), &logpb.Op{Op: &logpb.Op_WillClaim{WillClaim: &logpb.WillClaim{
		ClientId: req.ClientId, BrokerId: req.BrokerId, ClaimTtlSeconds: req.ClaimTtlSeconds}}})
	if err != nil {
		return nil, err
	}
	raw := res.Value
	switch res.Code {
	case logpb.Code_CODE_OK:
	case logpb.Code_CODE_COMPARE_FAILED:
		raw = res.PrevValue
	default:
		return nil, resultError(res, willSubject(req.ClientId), "client_id", 0)
	}
	w, err := decodeWill(raw)
	if err != nil {
		return nil, s.statusOf(err, false)
	}
	return &metapb.ClaimWillResponse{Claimed: res.Code == logpb.Code_CODE_OK, Will: w}, nil
}

// Complete deletes a will its claimer has published; completed is false
// when the will is not claimed by broker_id (any more). NotFound when the
// client has no will.
func (ws *willsService) Complete(ctx context.Context, req *metapb.CompleteWillRequest) (*metapb.CompleteWillResponse, error) {
	if err := firstErr(checkClientID("client_id", req.ClientId), checkBrokerID("broker_id", req.BrokerId, true)); err != nil {
		return nil, err
	}
	s := ws.s
	res, err := s.proposeData(ctx, []byte(req.ClientId), &logpb.Op{Op: &logpb.Op_WillComplete{WillComplete: &logpb.WillComplete{
		ClientId: req.ClientId, BrokerId: req.BrokerId}}})
	if err != nil {
		return nil, err
	}
	if res.Code == logpb.Code_CODE_COMPARE_FAILED {
		return &metapb.CompleteWillResponse{}, nil
	}
	if err := resultError(res, willSubject(req.ClientId), "client_id", 0); err != nil {
		return nil, err
	}
	return &metapb.CompleteWillResponse{Completed: true}, nil
}
