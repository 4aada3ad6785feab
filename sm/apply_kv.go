package sm

import (
	"bytes"

	"github.com/metamq/meta/sm/logpb"
)

// Batch KV ops: a multi-put's part for one group (KVPuts) and a
// transaction over keys of one group (KVTxn). Each is one op, so it is
// atomic (the applier's savepoint undoes its writes if an entry is refused
// midway) and all of its writes share one revision, their events numbered
// in op order. A KVTxn's compares read the group's state through the
// batch, at the op's place in the log: that is what makes it linearizable.

// kvPuts applies every put of p, or none.
func (a *applier) kvPuts(p *logpb.KVPuts) (*logpb.Result, error) {
	if len(p.Puts) == 0 {
		return invalid("no puts"), nil
	}
	for i, pu := range p.Puts {
		if len(pu.GetKey()) == 0 {
			return invalid("put %d: empty key", i), nil
		}
	}
	var prevs [][]byte
	if p.ReturnPrevious {
		prevs = make([][]byte, len(p.Puts))
	}
	for i, pu := range p.Puts {
		_, prevRaw, refused, err := a.putKV(pu.Key, pu.Value, pu.Lease)
		if refused != nil || err != nil {
			return entryRefused(refused, i), err
		}
		if prevs != nil {
			prevs[i] = prevRaw
		}
	}
	return &logpb.Result{PrevValues: prevs}, nil
}

// entryRefused marks a batch op's result refused because of its entry i
// (Result.count is i + 1); nil stays nil.
func entryRefused(r *logpb.Result, i int) *logpb.Result {
	if r != nil {
		r.Count = uint64(i) + 1
	}
	return r
}

// txnKeys is every key a KVTxn names: its compares', then both branches'.
func txnKeys(t *logpb.KVTxn) [][]byte {
	keys := make([][]byte, 0, len(t.Compares)+len(t.Success)+len(t.Failure))
	for _, c := range t.Compares {
		keys = append(keys, c.GetKey())
	}
	for _, ops := range [][]*logpb.KVTxnOp{t.Success, t.Failure} {
		for _, op := range ops {
			keys = append(keys, txnOpKey(op))
		}
	}
	return keys
}

// txnOpKey is the key a txn op writes (nil when it has none).
func txnOpKey(op *logpb.KVTxnOp) []byte {
	switch o := op.GetOp().(type) {
	case *logpb.KVTxnOp_Put:
		return o.Put.GetKey()
	case *logpb.KVTxnOp_Delete:
		return o.Delete.GetKey()
	}
	return nil
}

// checkTxn refuses a KVTxn that is empty or has an entry without a key or
// a target.
func checkTxn(t *logpb.KVTxn) *logpb.Result {
	if len(t.Compares)+len(t.Success)+len(t.Failure) == 0 {
		return invalid("empty transaction")
	}
	for i, c := range t.Compares {
		if len(c.GetKey()) == 0 || c.GetTarget() == nil {
			return invalid("compare %d: key and target must be set", i)
		}
	}
	for _, ops := range [][]*logpb.KVTxnOp{t.Success, t.Failure} {
		for i, op := range ops {
			if len(txnOpKey(op)) == 0 {
				return invalid("op %d: a put or delete with a key must be set", i)
			}
		}
	}
	return nil
}

// holds evaluates one compare against the key's current state (nil when
// absent).
func holds(c *logpb.KVCompare, cur *logpb.KV) bool {
	switch t := c.Target.(type) {
	case *logpb.KVCompare_Value:
		return cur != nil && bytes.Equal(cur.Value, t.Value)
	case *logpb.KVCompare_Version:
		return cur.GetVersion() == t.Version
	case *logpb.KVCompare_ModRevision:
		return cur.GetModRevision() == t.ModRevision
	case *logpb.KVCompare_Absent:
		return (cur == nil) == t.Absent
	}
	return false
}

// kvTxn evaluates t's compares and applies the branch they choose.
func (a *applier) kvTxn(t *logpb.KVTxn) (*logpb.Result, error) {
	if r := checkTxn(t); r != nil {
		return r, nil
	}
	ok := true
	for _, c := range t.Compares {
		if plantedTxnNoCompare() {
			break
		}
		cur, _, err := a.getKV(c.Key)
		if err != nil {
			return nil, err
		}
		if !holds(c, cur) {
			ok = false
			break
		}
	}
	ops := t.Success
	if !ok {
		ops = t.Failure
	}
	res := &logpb.Result{Succeeded: ok, Flags: make([]bool, len(ops)), PrevValues: make([][]byte, len(ops))}
	for i, op := range ops {
		var prev *logpb.KV
		var prevRaw []byte
		var refused *logpb.Result
		var err error
		switch o := op.Op.(type) {
		case *logpb.KVTxnOp_Put:
			prev, prevRaw, refused, err = a.putKV(o.Put.Key, o.Put.Value, o.Put.Lease)
		case *logpb.KVTxnOp_Delete:
			prev, prevRaw, err = a.getKV(o.Delete.Key)
			if err == nil && prev != nil {
				err = a.deleteKV(o.Delete.Key, prev, prevRaw)
			}
		}
		if refused != nil || err != nil {
			if refused != nil {
				refused.Succeeded = ok
			}
			return entryRefused(refused, i), err
		}
		res.Flags[i], res.PrevValues[i] = prev != nil, prevRaw
	}
	return res, nil
}
