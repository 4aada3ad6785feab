package sm

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// Ownership. A data or offset group serves the ranges of the route hash
// space its own log says it owns (logpb.Ownership): the map in metadata-0
// only directs requests. Every op that touches a routing key is checked
// when it is applied (so a command proposed before a handoff and applied
// after it is refused, deterministically, on every replica), and every
// read checks in the same view as the data (reads hold restoreMu for
// reading; an apply that changes ownership commits holding it for
// writing). A group that has not recorded its ownership serves everything
// sent to it, as every group did before ranges existed: the log written by
// an earlier release, replayed after an upgrade, applies exactly as it did
// then (refusing it would drop acknowledged writes). Its leader records
// the ownership from the directory (OwnershipInit) in its first term; a
// group made by a split must start with an explicit record.
//
// The route hash is FNV-1a of the routing key with its bits reversed
// (rpc/metapb.RouteHash; sm cannot import rpc, so RouteHash repeats the
// two lines of the contract, and a test holds them equal).

// RouteHash is rpc/metapb.RouteHash (ci/route_test.go holds them equal).
func RouteHash(routingKey []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range routingKey {
		h ^= uint32(c)
		h *= 16777619
	}
	return bits.Reverse32(h)
}

// ownView is the in-memory copy of the stored ownership record; nil until
// recorded (then the group serves everything).
type ownView struct {
	rec *logpb.Ownership
}

// lookup says whether a routing key may be served (CODE_OK, or the
// refusal) and, when served, the version of the owned range holding it
// (0 when the group records no ranges: legacy, or nothing recorded yet).
func (v *ownView) lookup(routingKey []byte) (logpb.Code, uint64) {
	if v == nil || v.rec == nil || v.rec.Legacy {
		return logpb.Code_CODE_OK, 0
	}
	h := RouteHash(routingKey)
	for _, r := range v.rec.Owned {
		if inRange(r, h) {
			return logpb.Code_CODE_OK, r.Version
		}
	}
	for _, mr := range v.rec.Moving {
		if inRange(mr.Range, h) {
			return logpb.Code_CODE_RANGE_MOVING, 0
		}
	}
	return logpb.Code_CODE_WRONG_GROUP, 0
}

// code is lookup's verdict alone.
func (v *ownView) code(routingKey []byte) logpb.Code {
	c, _ := v.lookup(routingKey)
	return c
}

// splitting reports whether a split of this group is under way here: a
// range released and not dropped (the parent), or a copy not yet
// acquired (the child). Leases, which every data group holds and a child
// copies, do not change meanwhile, nor is anything listed (a listing
// would miss the moving range).
func (v *ownView) splitting() bool {
	return v != nil && v.rec != nil && (len(v.rec.Moving) > 0 || v.rec.Ingesting)
}

// checkList refuses a listing while a split is under way.
func (m *Machine) checkList() error {
	if m.routed() && m.own.Load().splitting() {
		return &OwnershipError{Group: m.group, Moving: true}
	}
	return nil
}

// routed reports whether ops and reads of this machine's kind are checked
// against ownership (data and offset groups; metadata-0 is not split).
func (m *Machine) routed() bool { return m.kind == KindData || m.kind == KindOffset }

// Ownership returns the group's ownership record (nil until recorded).
func (m *Machine) Ownership() *logpb.Ownership {
	if v := m.own.Load(); v != nil {
		return proto.CloneOf(v.rec)
	}
	return nil
}

// OwnershipError refuses a read of a key the group does not serve.
type OwnershipError = state.OwnershipError

// checkRead refuses a read of a routing key this group does not serve.
// Call it inside m.read (the same view as the data).
func (m *Machine) checkRead(routingKey []byte) error {
	_, err := m.readVersion(routingKey)
	return err
}

// readVersion is checkRead that also returns the version of the owned
// range holding the key (0: the group records no ranges).
func (m *Machine) readVersion(routingKey []byte) (uint64, error) {
	if !m.routed() {
		return 0, nil
	}
	c, ver := m.own.Load().lookup(routingKey)
	if c != logpb.Code_CODE_OK {
		return 0, &OwnershipError{Group: m.group, Moving: c == logpb.Code_CODE_RANGE_MOVING}
	}
	return ver, nil
}

// owns reports whether a routing key is served here (for listings, which
// skip what is not).
func (m *Machine) owns(routingKey []byte) bool {
	return !m.routed() || m.own.Load().code(routingKey) == logpb.Code_CODE_OK
}

// loadOwnership reads the stored record into memory.
func (m *Machine) loadOwnership(get func([]byte) ([]byte, bool, error)) error {
	v, ok, err := get(keyOwnership)
	if err != nil {
		return err
	}
	if !ok {
		m.own.Store(nil)
		return nil
	}
	rec := &logpb.Ownership{}
	if err := proto.Unmarshal(v, rec); err != nil {
		return fmt.Errorf("sm: decode ownership: %w", err)
	}
	m.own.Store(&ownView{rec: rec})
	return nil
}

// routingKeys returns the routing keys an op touches, and whether the op
// is the group's own housekeeping (expiries, proposed by its leader for
// keys it found due), whose keys outside the owned ranges are skipped
// rather than failing the op. Ops without routing keys (leases, events)
// are not checked.
func routingKeys(op *logpb.Op) (keys [][]byte, internal bool) {
	switch o := op.Op.(type) {
	case *logpb.Op_Put:
		return [][]byte{o.Put.Key}, false
	case *logpb.Op_Delete:
		return [][]byte{o.Delete.Key}, false
	case *logpb.Op_Cas:
		return [][]byte{o.Cas.Key}, false
	case *logpb.Op_KvPuts:
		for _, p := range o.KvPuts.Puts {
			keys = append(keys, p.GetKey())
		}
		return keys, false
	case *logpb.Op_KvTxn:
		return txnKeys(o.KvTxn), false
	case *logpb.Op_OffsetCommit:
		for _, e := range o.OffsetCommit.Entries {
			keys = append(keys, []byte(e.Group))
		}
		return keys, false
	case *logpb.Op_OffsetDeleteGroup:
		return [][]byte{[]byte(o.OffsetDeleteGroup.Group)}, false
	case *logpb.Op_SessionsPut:
		for _, s := range o.SessionsPut.Sessions {
			keys = append(keys, []byte(s.ClientId))
		}
		return keys, false
	case *logpb.Op_SessionsDelete:
		return strs(o.SessionsDelete.ClientIds), false
	case *logpb.Op_SessionsExpire:
		return strs(o.SessionsExpire.ClientIds), true
	case *logpb.Op_WillPut:
		return [][]byte{[]byte(o.WillPut.ClientId)}, false
	case *logpb.Op_WillDelete:
		return [][]byte{[]byte(o.WillDelete.ClientId)}, false
	case *logpb.Op_WillsMarkDue:
		return strs(o.WillsMarkDue.ClientIds), true
	case *logpb.Op_WillClaim:
		return [][]byte{[]byte(o.WillClaim.ClientId)}, false
	case *logpb.Op_WillComplete:
		return [][]byte{[]byte(o.WillComplete.ClientId)}, false
	case *logpb.Op_RetainedSet:
		return [][]byte{[]byte(o.RetainedSet.Topic)}, false
	}
	return nil, false
}

func strs(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// checkOp refuses an op that touches a routing key this group does not
// serve (all of the op, so that each routing key's part stays atomic; the
// server routes it again). Housekeeping ops instead drop the keys they may
// not touch. It returns nil when the op may be applied (as possibly
// narrowed), with the version its response reports (Result.RangeVersion):
// that of the owned range holding its routing keys when they all lie in
// ranges of one version, else 0.
func (a *applier) checkOp(op *logpb.Op) (*logpb.Op, uint64, *logpb.Result) {
	if !a.m.routed() {
		return op, 0, nil
	}
	v := a.own
	switch op.Op.(type) {
	case *logpb.Op_OwnershipInit, *logpb.Op_RangeRelease, *logpb.Op_RangeIngest, *logpb.Op_RangeAcquire, *logpb.Op_RangeDrop, *logpb.Op_RangeTrack,
		*logpb.Op_RangeAbort, *logpb.Op_RangeReset:
		return op, 0, nil
	case *logpb.Op_LeaseGrant, *logpb.Op_LeaseKeepAlive, *logpb.Op_LeaseRevoke, *logpb.Op_LeasesExpire:
		if v.splitting() {
			return nil, 0, &logpb.Result{Code: logpb.Code_CODE_RANGE_MOVING, Message: fmt.Sprintf("%s is splitting: leases change once it is done", a.m.group)}
		}
		return op, 0, nil
	}
	keys, internal := routingKeys(op)
	if len(keys) == 0 {
		return op, 0, nil
	}
	if internal {
		return narrow(op, func(k []byte) bool { return v.code(k) == logpb.Code_CODE_OK }), 0, nil
	}
	worst := logpb.Code_CODE_OK
	ver, same := uint64(0), true
	for i, k := range keys {
		c, kv := v.lookup(k)
		if i == 0 {
			ver = kv
		} else if kv != ver {
			same = false
		}
		switch c {
		case logpb.Code_CODE_RANGE_MOVING:
			worst = c
		case logpb.Code_CODE_WRONG_GROUP:
			if worst == logpb.Code_CODE_OK {
				worst = c
			}
		}
	}
	if worst != logpb.Code_CODE_OK {
		return nil, 0, &logpb.Result{Code: worst, Message: fmt.Sprintf("%s does not serve the op's routing key now", a.m.group)}
	}
	if !same {
		ver = 0
	}
	return op, ver, nil
}

// narrow returns a housekeeping op with only the ids keep accepts.
func narrow(op *logpb.Op, keep func([]byte) bool) *logpb.Op {
	filter := func(ids []string) []string {
		var out []string
		for _, id := range ids {
			if keep([]byte(id)) {
				out = append(out, id)
			}
		}
		return out
	}
	switch o := op.Op.(type) {
	case *logpb.Op_SessionsExpire:
		return &logpb.Op{Op: &logpb.Op_SessionsExpire{SessionsExpire: &logpb.SessionsExpire{ClientIds: filter(o.SessionsExpire.ClientIds)}}}
	case *logpb.Op_WillsMarkDue:
		return &logpb.Op{Op: &logpb.Op_WillsMarkDue{WillsMarkDue: &logpb.WillsMarkDue{ClientIds: filter(o.WillsMarkDue.ClientIds)}}}
	}
	return op
}

// ownershipInit records the group's ownership once.
func (a *applier) ownershipInit(o *logpb.OwnershipInit) (*logpb.Result, error) {
	if !a.m.routed() {
		return invalid("%s groups own no ranges", a.m.kind), nil
	}
	if _, ok, err := a.b.Get(a.m.space, keyOwnership); err != nil {
		return nil, err
	} else if ok {
		return &logpb.Result{}, nil
	}
	for _, r := range o.Ranges {
		if r.Hi <= r.Lo || r.Hi > 1<<32 {
			return invalid("range [%#x,%#x)", r.Lo, r.Hi), nil
		}
	}
	rec := &logpb.Ownership{Legacy: o.Legacy, Owned: o.Ranges}
	a.ownChanged = rec
	return &logpb.Result{}, a.write(keyOwnership, rec)
}

// rawRoute returns the routing key of one of this group's stored keys, and
// whether it has one: records of one routing key go wherever it goes;
// leases, the change log and the reserved keys belong to the whole group.
// Splits copy, list and delete by it.
func rawRoute(key []byte) (routingKey []byte, ok bool) {
	if len(key) < 1 {
		return nil, false
	}
	rest := key[1:]
	switch key[0] {
	case prefixKV, prefixSession, prefixWill, prefixWillDue, prefixRetained:
		return rest, true
	case prefixSessionExp, prefixWillTimer:
		if len(rest) < 8 {
			return nil, false
		}
		return rest[8:], true // <at> <client id>
	case prefixLeaseKeys:
		if len(rest) < 8 {
			return nil, false
		}
		return rest[8:], true // <lease> <key>
	case prefixOffset:
		n, w := binary.Uvarint(rest) // <group> is uvarint-length-prefixed
		if w <= 0 || uint64(len(rest)-w) < n {
			return nil, false
		}
		return rest[w : w+int(n)], true
	}
	return nil, false
}
