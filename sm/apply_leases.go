package sm

import (
	"time"

	"github.com/metamq/meta/sm/logpb"
)

// Leases. Every data group holds a replica of every lease (the server
// grants, keeps alive and revokes in each group), so a key's attachment is
// checked in the key's own group, atomically with the put. The group's
// leader expires leases past expires_at (LeasesExpire); apply re-checks
// against the entry's time, so a lease kept alive meanwhile survives.

func (a *applier) getLease(id int64) (*logpb.Lease, error) {
	l := &logpb.Lease{}
	_, ok, err := a.get(leaseKey(id), l)
	if err != nil || !ok {
		return nil, err
	}
	return l, nil
}

func (a *applier) leaseExists(id int64) (bool, error) {
	_, ok, err := a.b.Get(a.m.space, leaseKey(id))
	return ok, err
}

func (a *applier) storeLease(l *logpb.Lease, old int64) error {
	if old != 0 {
		a.unmark(timerKey(prefixLeaseExp, old, be64(uint64(l.Id))))
	}
	a.mark(timerKey(prefixLeaseExp, l.ExpiresAtUnixNano, be64(uint64(l.Id))))
	return a.write(leaseKey(l.Id), l)
}

func (a *applier) leaseGrant(g *logpb.LeaseGrant) (*logpb.Result, error) {
	if g.Id <= 0 || g.TtlSeconds <= 0 {
		return invalid("lease id and ttl must be positive"), nil
	}
	cur, err := a.getLease(g.Id)
	if err != nil {
		return nil, err
	}
	if cur != nil && cur.TtlSeconds != g.TtlSeconds {
		return &logpb.Result{Code: logpb.Code_CODE_CONFLICT, Message: "lease exists with another ttl"}, nil
	}
	a.bump()
	l := &logpb.Lease{Id: g.Id, TtlSeconds: g.TtlSeconds, ExpiresAtUnixNano: a.now + g.TtlSeconds*int64(time.Second)}
	var old int64
	if cur != nil {
		old = cur.ExpiresAtUnixNano
	}
	return &logpb.Result{}, a.storeLease(l, old)
}

// existingLease reads a lease an op needs; a result that ends the op when
// it is not found.
func (a *applier) existingLease(id int64) (*logpb.Lease, *logpb.Result, error) {
	cur, err := a.getLease(id)
	if err != nil || cur != nil {
		return cur, nil, err
	}
	return nil, notFound("lease %d not found", id), nil
}

func (a *applier) leaseKeepAlive(id int64) (*logpb.Result, error) {
	cur, res, err := a.existingLease(id)
	if cur == nil {
		return res, err
	}
	a.bump()
	old := cur.ExpiresAtUnixNano
	cur.ExpiresAtUnixNano = a.now + cur.TtlSeconds*int64(time.Second)
	return &logpb.Result{}, a.storeLease(cur, old)
}

func (a *applier) leaseRevoke(id int64) (*logpb.Result, error) {
	cur, res, err := a.existingLease(id)
	if cur == nil {
		return res, err
	}
	n, err := a.revoke(cur)
	if err != nil {
		return nil, err
	}
	return &logpb.Result{Count: n}, nil
}

// revoke deletes a lease and every key attached to it.
func (a *applier) revoke(l *logpb.Lease) (uint64, error) {
	a.bump()
	p := prefixed(prefixLeaseKeys, be64(uint64(l.Id)))
	keys, err := a.scanKeys(p, prefixEnd(p), 0)
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, k := range keys {
		userKey := k[len(p):]
		kv, raw, err := a.getKV(userKey)
		if err != nil {
			return 0, err
		}
		a.unmark(k)
		if kv != nil && kv.Lease == l.Id {
			if err := a.deleteKV(userKey, kv, raw); err != nil {
				return 0, err
			}
			n++
		}
	}
	a.unmark(timerKey(prefixLeaseExp, l.ExpiresAtUnixNano, be64(uint64(l.Id))))
	a.b.Delete(a.m.space, leaseKey(l.Id))
	return n, nil
}

func (a *applier) leasesExpire(e *logpb.LeasesExpire) (*logpb.Result, error) {
	var n uint64
	for _, id := range e.Ids {
		l, err := a.getLease(id)
		if err != nil {
			return nil, err
		}
		if l == nil || l.ExpiresAtUnixNano > a.now {
			continue
		}
		if _, err := a.revoke(l); err != nil {
			return nil, err
		}
		n++
	}
	return &logpb.Result{Count: n}, nil
}

// eventsCompact drops change-log entries below a revision.
func (a *applier) eventsCompact(below uint64) (*logpb.Result, error) {
	cur, err := a.compactRevision()
	if err != nil {
		return nil, err
	}
	if below <= cur {
		return &logpb.Result{}, nil
	}
	if below > a.st.Revision+1 {
		below = a.st.Revision + 1
	}
	keys, err := a.scanKeys([]byte{prefixEvent}, eventKey(below, 0), 0)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		a.b.Delete(a.m.space, k)
	}
	a.b.Put(a.m.space, keyCompact, be64(below))
	return &logpb.Result{Count: uint64(len(keys))}, nil
}

func (a *applier) compactRevision() (uint64, error) {
	return storedU64(a.b.Get(a.m.space, keyCompact))
}
