package sm

import (
	"bytes"
	"time"

	"github.com/metamq/meta/sm/logpb"
)

// ExpiryNever is the MQTT 5 session expiry interval meaning "never".
const ExpiryNever = 0xFFFFFFFF

// DefaultClaimTTL bounds a will claim that does not say.
const DefaultClaimTTL = 30 * time.Second

// MQTT sessions and wills live in the same data group (both routed by
// client id), so the changes of one client's session and will apply
// together. The lifecycle, all of it decided by the entry's time (the
// leader's clock when it proposed):
//
//	session put connected=false: disconnected_at = now (kept if it was
//	  already disconnected), expires_at = now + expiry interval (0 if
//	  never); a PENDING will becomes ARMED, due at now + delay or at the
//	  session's expiry if earlier (DUE at once if that is not in the
//	  future).
//	session put connected=true: an ARMED will goes back to PENDING.
//	SessionsExpire (leader): a disconnected session past expires_at is
//	  deleted; its will, unless already claimed, becomes DUE.
//	WillsMarkDue (leader): an ARMED will past due_at, or a CLAIMED one past
//	  its claim expiry, becomes DUE.
//	WillClaim: a DUE will (or one whose due time or claim expiry has
//	  passed) becomes CLAIMED by one broker; any other state is a compare
//	  failure, so of two brokers racing exactly one wins.
//	WillComplete: the claimer deletes the will once published.

func expiresAt(at int64, interval uint32) int64 {
	if interval == ExpiryNever {
		return 0
	}
	return at + int64(interval)*int64(time.Second)
}

func (a *applier) getSession(id string) (*logpb.Session, []byte, error) {
	return getStored(a, prefixed(prefixSession, []byte(id)), &logpb.Session{})
}

func (a *applier) getWill(id string) (*logpb.Will, []byte, error) {
	return getStored(a, prefixed(prefixWill, []byte(id)), &logpb.Will{})
}

func (a *applier) sessionsPut(p *logpb.SessionsPut) (*logpb.Result, error) {
	if len(p.Sessions) == 0 {
		return invalid("no sessions"), nil
	}
	for i, s := range p.Sessions {
		if s.ClientId == "" {
			return invalid("session %d: empty client id", i), nil
		}
	}
	rev := a.bump()
	flags := make([]bool, len(p.Sessions))
	applied := make([]bool, len(p.Sessions))
	var prevs [][]byte
	if p.ReturnPrevious {
		prevs = make([][]byte, len(p.Sessions))
	}
	for i, sp := range p.Sessions {
		cur, curRaw, err := a.getSession(sp.ClientId)
		if err != nil {
			return nil, err
		}
		flags[i] = cur != nil
		if prevs != nil {
			prevs[i] = bytes.Clone(curRaw)
		}
		if sp.IfBrokerId != "" && (cur == nil || cur.BrokerId != sp.IfBrokerId) {
			continue // held by another broker now (or gone): not ours to change
		}
		if sp.IfBrokerEpochAtMost != 0 && (cur == nil || cur.BrokerEpoch > sp.IfBrokerEpochAtMost) {
			continue // rewritten by a later registration of its broker
		}
		applied[i] = true
		s := &logpb.Session{ClientId: sp.ClientId, BrokerId: sp.BrokerId, Connected: sp.Connected,
			ExpiryIntervalSeconds: sp.ExpiryIntervalSeconds, State: sp.State, BrokerEpoch: sp.BrokerEpoch,
			CreateRevision: rev, ModRevision: rev, Version: 1}
		if cur != nil {
			s.CreateRevision, s.Version = cur.CreateRevision, cur.Version+1
			if sp.KeepState {
				s.State = cur.State
			}
			if cur.ExpiresAtUnixNano != 0 {
				a.unmark(timerKey(prefixSessionExp, cur.ExpiresAtUnixNano, []byte(cur.ClientId)))
			}
		}
		if !sp.Connected {
			s.DisconnectedAtUnixNano = a.now
			if cur != nil && !cur.Connected && cur.DisconnectedAtUnixNano != 0 {
				s.DisconnectedAtUnixNano = cur.DisconnectedAtUnixNano
			}
			s.ExpiresAtUnixNano = expiresAt(s.DisconnectedAtUnixNano, s.ExpiryIntervalSeconds)
			if s.ExpiresAtUnixNano != 0 {
				a.mark(timerKey(prefixSessionExp, s.ExpiresAtUnixNano, []byte(s.ClientId)))
			}
		}
		if err := a.write(prefixed(prefixSession, []byte(s.ClientId)), s); err != nil {
			return nil, err
		}
		if sp.DeleteWill {
			w, raw, err := a.getWill(s.ClientId)
			if err != nil {
				return nil, err
			}
			if w != nil {
				if err := a.deleteWill(w, raw); err != nil {
					return nil, err
				}
			}
			continue
		}
		if err := a.sessionChangedWill(s); err != nil {
			return nil, err
		}
	}
	return &logpb.Result{Count: uint64(len(p.Sessions)), Flags: flags, Applied: applied, PrevValues: prevs}, nil
}

// sessionChangedWill moves a client's will with its session's connection.
func (a *applier) sessionChangedWill(s *logpb.Session) error {
	w, raw, err := a.getWill(s.ClientId)
	if err != nil || w == nil {
		return err
	}
	switch {
	case s.Connected && w.State == logpb.WillState_WILL_STATE_ARMED:
		a.unmark(timerKey(prefixWillTimer, w.DueAtUnixNano, []byte(w.ClientId)))
		w.State, w.DueAtUnixNano = logpb.WillState_WILL_STATE_PENDING, 0
	case !s.Connected && w.State == logpb.WillState_WILL_STATE_PENDING:
		a.arm(w, s)
	default:
		return nil
	}
	return a.storeWill(w, raw)
}

// arm sets an unarmed will's due time from its disconnected session.
func (a *applier) arm(w *logpb.Will, s *logpb.Session) {
	due := s.DisconnectedAtUnixNano + int64(w.DelaySeconds)*int64(time.Second)
	if s.ExpiresAtUnixNano != 0 && s.ExpiresAtUnixNano < due {
		due = s.ExpiresAtUnixNano
	}
	w.DueAtUnixNano = due
	if due <= a.now {
		a.makeDue(w)
		return
	}
	w.State = logpb.WillState_WILL_STATE_ARMED
	a.mark(timerKey(prefixWillTimer, due, []byte(w.ClientId)))
}

// makeDue moves a will (already out of the timer index) to the due set.
func (a *applier) makeDue(w *logpb.Will) {
	w.State, w.ClaimedBy, w.ClaimExpiresAtUnixNano = logpb.WillState_WILL_STATE_DUE, "", 0
	a.mark(prefixed(prefixWillDue, []byte(w.ClientId)))
}

// unindexWill removes a will from whichever index its state puts it in.
func (a *applier) unindexWill(w *logpb.Will) {
	id := []byte(w.ClientId)
	switch w.State {
	case logpb.WillState_WILL_STATE_ARMED:
		a.unmark(timerKey(prefixWillTimer, w.DueAtUnixNano, id))
	case logpb.WillState_WILL_STATE_CLAIMED:
		a.unmark(timerKey(prefixWillTimer, w.ClaimExpiresAtUnixNano, id))
	case logpb.WillState_WILL_STATE_DUE:
		a.unmark(prefixed(prefixWillDue, id))
	}
}

func (a *applier) storeWill(w *logpb.Will, prevRaw []byte) error {
	w.ModRevision = a.bump()
	_, err := a.writeEmit(logpb.Space_SPACE_WILL, prefixed(prefixWill, []byte(w.ClientId)), []byte(w.ClientId), w, prevRaw)
	return err
}

func (a *applier) deleteWill(w *logpb.Will, prevRaw []byte) error {
	a.unindexWill(w)
	a.bump()
	a.b.Delete(a.m.space, prefixed(prefixWill, []byte(w.ClientId)))
	return a.emit(logpb.Space_SPACE_WILL, []byte(w.ClientId), nil, prevRaw, true)
}

func (a *applier) sessionsDelete(d *logpb.SessionsDelete) (*logpb.Result, error) {
	flags := make([]bool, len(d.ClientIds))
	n := 0
	for i, id := range d.ClientIds {
		s, _, err := a.getSession(id)
		if err != nil {
			return nil, err
		}
		if s == nil {
			continue
		}
		flags[i] = true
		n++
		a.bump()
		a.deleteSession(s)
	}
	return &logpb.Result{Count: uint64(n), Flags: flags}, nil
}

func (a *applier) deleteSession(s *logpb.Session) {
	if s.ExpiresAtUnixNano != 0 {
		a.unmark(timerKey(prefixSessionExp, s.ExpiresAtUnixNano, []byte(s.ClientId)))
	}
	a.b.Delete(a.m.space, prefixed(prefixSession, []byte(s.ClientId)))
}

func (a *applier) sessionsExpire(e *logpb.SessionsExpire) (*logpb.Result, error) {
	n := 0
	for _, id := range e.ClientIds {
		s, _, err := a.getSession(id)
		if err != nil {
			return nil, err
		}
		if s == nil || s.Connected || s.ExpiresAtUnixNano == 0 || s.ExpiresAtUnixNano > a.now {
			continue // reconnected, deleted or extended meanwhile
		}
		n++
		a.bump()
		a.deleteSession(s)
		w, raw, err := a.getWill(id)
		if err != nil {
			return nil, err
		}
		if w != nil && (w.State == logpb.WillState_WILL_STATE_ARMED || w.State == logpb.WillState_WILL_STATE_PENDING) {
			a.unindexWill(w)
			a.makeDue(w)
			if err := a.storeWill(w, raw); err != nil {
				return nil, err
			}
		}
	}
	return &logpb.Result{Count: uint64(n)}, nil
}

func (a *applier) willPut(p *logpb.WillPut) (*logpb.Result, error) {
	if p.ClientId == "" || p.Topic == "" {
		return invalid("will client id and topic must be set"), nil
	}
	cur, curRaw, err := a.getWill(p.ClientId)
	if err != nil {
		return nil, err
	}
	if cur != nil {
		a.unindexWill(cur)
	}
	w := &logpb.Will{ClientId: p.ClientId, Topic: p.Topic, Payload: p.Payload, Qos: p.Qos, Retain: p.Retain,
		DelaySeconds: p.DelaySeconds, Properties: p.Properties, State: logpb.WillState_WILL_STATE_PENDING}
	s, _, err := a.getSession(p.ClientId)
	if err != nil {
		return nil, err
	}
	if s != nil && !s.Connected {
		a.arm(w, s)
	}
	if err := a.storeWill(w, curRaw); err != nil {
		return nil, err
	}
	raw, _ := marshal.Marshal(w)
	return &logpb.Result{Value: raw, PrevValue: curRaw}, nil
}

func (a *applier) willDelete(id string) (*logpb.Result, error) {
	w, raw, err := a.getWill(id)
	if err != nil {
		return nil, err
	}
	if w == nil {
		return &logpb.Result{Code: logpb.Code_CODE_NOT_FOUND}, nil
	}
	if err := a.deleteWill(w, raw); err != nil {
		return nil, err
	}
	return &logpb.Result{Count: 1, PrevValue: raw}, nil
}

func (a *applier) willsMarkDue(m *logpb.WillsMarkDue) (*logpb.Result, error) {
	n := 0
	for _, id := range m.ClientIds {
		w, raw, err := a.getWill(id)
		if err != nil {
			return nil, err
		}
		if w == nil || !a.timerPassed(w) {
			continue
		}
		a.unindexWill(w)
		a.makeDue(w)
		if err := a.storeWill(w, raw); err != nil {
			return nil, err
		}
		n++
	}
	return &logpb.Result{Count: uint64(n)}, nil
}

// timerPassed reports an armed will past its due time or a claimed one
// past its claim expiry.
func (a *applier) timerPassed(w *logpb.Will) bool {
	switch w.State {
	case logpb.WillState_WILL_STATE_ARMED:
		return w.DueAtUnixNano <= a.now
	case logpb.WillState_WILL_STATE_CLAIMED:
		return w.ClaimExpiresAtUnixNano <= a.now
	}
	return false
}

// willIf reads the will of client id for a claim or a completion; a result
// ends the op when there is none (not found) or when ok rejects it (a
// compare failure).
func (a *applier) willIf(id string, ok func(*logpb.Will) bool) (*logpb.Will, []byte, *logpb.Result, error) {
	w, raw, err := a.getWill(id)
	switch {
	case err != nil:
		return nil, nil, nil, err
	case w == nil:
		return nil, nil, notFound("no will for %q", id), nil
	case !ok(w):
		return nil, nil, &logpb.Result{Code: logpb.Code_CODE_COMPARE_FAILED, PrevValue: raw}, nil
	}
	return w, raw, nil, nil
}

func (a *applier) willClaim(c *logpb.WillClaim) (*logpb.Result, error) {
	if c.ClientId == "" || c.BrokerId == "" {
		return invalid("client id and broker id must be set"), nil
	}
	w, raw, res, err := a.willIf(c.ClientId, func(w *logpb.Will) bool {
		return w.State == logpb.WillState_WILL_STATE_DUE || a.timerPassed(w)
	})
	if w == nil {
		return res, err
	}
	ttl := int64(c.ClaimTtlSeconds) * int64(time.Second)
	if ttl == 0 {
		ttl = int64(DefaultClaimTTL)
	}
	a.unindexWill(w)
	w.State, w.ClaimedBy, w.ClaimExpiresAtUnixNano = logpb.WillState_WILL_STATE_CLAIMED, c.BrokerId, a.now+ttl
	a.mark(timerKey(prefixWillTimer, w.ClaimExpiresAtUnixNano, []byte(w.ClientId)))
	if err := a.storeWill(w, raw); err != nil {
		return nil, err
	}
	v, _ := marshal.Marshal(w)
	return &logpb.Result{Value: v, PrevValue: raw}, nil
}

func (a *applier) willComplete(c *logpb.WillComplete) (*logpb.Result, error) {
	w, raw, res, err := a.willIf(c.ClientId, func(w *logpb.Will) bool {
		return w.State == logpb.WillState_WILL_STATE_CLAIMED && w.ClaimedBy == c.BrokerId
	})
	if w == nil {
		return res, err
	}
	if err := a.deleteWill(w, raw); err != nil {
		return nil, err
	}
	return &logpb.Result{Count: 1, PrevValue: raw}, nil
}

func (a *applier) retainedSet(r *logpb.RetainedSet) (*logpb.Result, error) {
	if r.Topic == "" {
		return invalid("empty topic"), nil
	}
	key := prefixed(prefixRetained, []byte(r.Topic))
	if len(r.Payload) == 0 {
		_, ok, err := a.b.Get(a.m.space, key)
		if err != nil {
			return nil, err
		}
		if !ok {
			return &logpb.Result{}, nil
		}
		a.bump()
		a.b.Delete(a.m.space, key)
		return &logpb.Result{Count: 1}, nil
	}
	rev := a.bump()
	return &logpb.Result{}, a.write(key, &logpb.Retained{Payload: r.Payload, Qos: r.Qos, Properties: r.Properties, ModRevision: rev})
}
