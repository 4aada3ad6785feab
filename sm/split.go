package sm

import (
	"bytes"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rocks"
	"github.com/metamq/meta/sm/logpb"
)

// Splits, as the two groups' logs see them (metanode/split.go drives them
// from metadata-0's directory). The parent P gives [lo, hi) of one of its
// ranges to a new group C:
//
//  1. RangeRelease in P's log, at index F (the fence): from F on, P
//     refuses, when applying, every op touching the range (RANGE_MOVING),
//     and every lease change (C copies the leases); the range's data in P
//     is frozen, the same on every replica at any index >= F.
//  2. RangeIngest entries in C's log copy the range's data, read from a
//     replica of P applied to >= F, in key order, each chunk applied only
//     after the one before it (a resumed copy never writes twice). C
//     serves nothing meanwhile (its ownership is "ingesting").
//  3. RangeAcquire in C's log checks the copy (key count and hash equal
//     P's at F), then C owns the range; its revisions continue from P's
//     at F.
//  4. RangeDrop in P's log deletes the range's data from P; the range is
//     then WRONG_GROUP there.
//
// Every op on the range is applied by exactly one group: P before F, C
// after its acquire, which commits after F; C starts from P's state at F.

// movedKey reports whether a stored key of the parent is copied to a child
// taking r: a record of a routing key inside r, or a lease (leases live in
// every data group: the child needs them all).
func movedKey(key []byte, r *logpb.HashRange) bool {
	if rk, ok := rawRoute(key); ok {
		return inRange(r, RouteHash(rk))
	}
	return len(key) > 0 && (key[0] == prefixLease || key[0] == prefixLeaseExp)
}

// droppedKey reports whether a stored key of the parent goes when it
// drops r (its leases stay: they are every group's).
func droppedKey(key []byte, r *logpb.HashRange) bool {
	rk, ok := rawRoute(key)
	return ok && inRange(r, RouteHash(rk))
}

func inRange(r *logpb.HashRange, h uint32) bool {
	return uint64(h) >= r.GetLo() && uint64(h) < r.GetHi()
}

// keyIngestCursor is the last key a child ingested (in the hashed state,
// so that a replica restored from a snapshot resumes exactly).
var keyIngestCursor = []byte{prefixOwnership, 'i'}

// RangeDigest is the key count and hash of the keys a split copies.
type RangeDigest struct {
	Keys, Hash uint64
}

// digestRange digests the keys movedKey selects from a scan in key order.
func digestRange(scan func(fn func(k, v []byte) bool) error, r *logpb.HashRange) (RangeDigest, error) {
	h := newHasher()
	err := scan(func(k, v []byte) bool {
		if movedKey(k, r) {
			h.add(k, v)
		}
		return true
	})
	return RangeDigest{Keys: h.n, Hash: h.h.Sum64()}, err
}

// RangeChunk is a page of the keys a split copies, read from one view.
type RangeChunk struct {
	Pairs []*logpb.RawPair
	// Done: no key follows the last pair.
	Done bool
	// Digest is of every key the split copies (set on the first page,
	// when asked).
	Digest *RangeDigest
	// AppliedIndex is the index the view holds.
	AppliedIndex uint64
}

// ReadRange reads, from one view of this replica, up to limit keys (and
// maxBytes of them) that a split of r copies, after key after (empty: from
// the start); withDigest adds the digest of all of them. The replica must
// have released r (its data is frozen then): a view before the fence is
// refused (RANGE_MOVING is not set yet: the caller waits and asks again).
func (m *Machine) ReadRange(r *logpb.HashRange, after []byte, limit, maxBytes int, withDigest bool) (*RangeChunk, error) {
	out := &RangeChunk{}
	err := m.view(func(sn *rocks.Snapshot, st *logpb.AppliedState) error {
		out.AppliedIndex = st.GetIndex()
		if !m.own.Load().released(r) {
			return fmt.Errorf("%w: %s has not released [%#x,%#x) at index %d", ErrNotReleased, m.group, r.GetLo(), r.GetHi(), st.GetIndex())
		}
		if withDigest {
			d, err := digestRange(func(fn func(k, v []byte) bool) error { return sn.Scan(m.space, userStart, userEnd, fn) }, r)
			if err != nil {
				return err
			}
			out.Digest = &d
		}
		start := userStart
		if len(after) > 0 {
			start = append(slices.Clone(after), 0)
		}
		size := 0
		out.Done = true
		return sn.Scan(m.space, start, userEnd, func(k, v []byte) bool {
			if !movedKey(k, r) {
				return true
			}
			if len(out.Pairs) >= limit || (size >= maxBytes && len(out.Pairs) > 0) {
				out.Done = false
				return false
			}
			out.Pairs = append(out.Pairs, &logpb.RawPair{Key: slices.Clone(k), Value: slices.Clone(v)})
			size += len(k) + len(v)
			return true
		})
	})
	return out, err
}

// ErrNotReleased: the replica read has not applied the range's release.
var ErrNotReleased = fmt.Errorf("sm: range not released")

// released reports whether the view holds r as released.
func (v *ownView) released(r *logpb.HashRange) bool {
	if v == nil || v.rec == nil {
		return false
	}
	return slices.ContainsFunc(v.rec.Moving, func(mr *logpb.MovingRange) bool { return sameRange(mr.Range, r) })
}

func sameRange(a, b *logpb.HashRange) bool { return a.GetLo() == b.GetLo() && a.GetHi() == b.GetHi() }

// ownRecord returns a copy of the ownership the op sees (nil: none).
func (a *applier) ownRecord() *logpb.Ownership {
	if a.own == nil || a.own.rec == nil {
		return nil
	}
	return proto.CloneOf(a.own.rec)
}

// setOwnership stores rec as the group's ownership from this op on.
func (a *applier) setOwnership(rec *logpb.Ownership) error {
	a.ownChanged = rec
	a.own = &ownView{rec: rec}
	return a.write(keyOwnership, rec)
}

// rangeRelease fences r in the parent (idempotent).
func (a *applier) rangeRelease(o *logpb.RangeRelease) (*logpb.Result, error) {
	rec := a.ownRecord()
	if rec == nil || rec.Legacy || rec.Ingesting {
		return invalid("%s has no ranges of its own to release", a.m.group), nil
	}
	if o.To == "" || o.Range == nil || o.Range.Hi <= o.Range.Lo {
		return invalid("release: a range and a group to release it to are required"), nil
	}
	for _, mr := range rec.Moving {
		if sameRange(mr.Range, o.Range) && mr.To == o.To {
			v, err := marshal.Marshal(mr)
			return &logpb.Result{Value: v}, err
		}
	}
	i := slices.IndexFunc(rec.Owned, func(h *logpb.HashRange) bool { return h.Lo <= o.Range.Lo && o.Range.Hi <= h.Hi })
	if i < 0 {
		return &logpb.Result{Code: logpb.Code_CODE_CONFLICT, Message: fmt.Sprintf("%s does not own [%#x,%#x)", a.m.group, o.Range.Lo, o.Range.Hi)}, nil
	}
	own := rec.Owned[i]
	var rest []*logpb.HashRange
	if own.Lo < o.Range.Lo {
		rest = append(rest, &logpb.HashRange{Lo: own.Lo, Hi: o.Range.Lo, Version: o.Range.Version})
	}
	if o.Range.Hi < own.Hi {
		rest = append(rest, &logpb.HashRange{Lo: o.Range.Hi, Hi: own.Hi, Version: o.Range.Version})
	}
	rec.Owned = slices.Concat(rec.Owned[:i], rest, rec.Owned[i+1:])
	mr := &logpb.MovingRange{Range: proto.CloneOf(o.Range), To: o.To, FenceIndex: a.st.Index, FenceRevision: a.st.Revision}
	rec.Moving = append(rec.Moving, mr)
	if err := a.setOwnership(rec); err != nil {
		return nil, err
	}
	v, err := marshal.Marshal(mr)
	return &logpb.Result{Value: v}, err
}

// rangeIngest stores a chunk of the copy in the child.
func (a *applier) rangeIngest(o *logpb.RangeIngest) (*logpb.Result, error) {
	rec := a.ownRecord()
	switch {
	case rec == nil:
		// The first chunk: the group serves nothing until it acquires.
		rec = &logpb.Ownership{Ingesting: true}
		if err := a.setOwnership(rec); err != nil {
			return nil, err
		}
	case !rec.Ingesting:
		return invalid("%s is not copying a range", a.m.group), nil
	}
	cur, _, err := a.b.Get(a.m.space, keyIngestCursor)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(cur, o.After) {
		return &logpb.Result{Code: logpb.Code_CODE_CONFLICT, Value: slices.Clone(cur), Message: "the copy is at another key"}, nil
	}
	last := o.After
	for _, p := range o.Pairs {
		if !movedKey(p.Key, o.Range) || bytes.Compare(p.Key, last) <= 0 || p.Key[0] == prefixOwnership {
			return invalid("ingest: key %x is not of the range, or out of order", p.Key), nil
		}
		a.b.Put(a.m.space, p.Key, p.Value)
		last = p.Key
	}
	a.b.Put(a.m.space, keyIngestCursor, last)
	return &logpb.Result{Count: uint64(len(o.Pairs))}, nil
}

// rangeAcquire checks the child's copy and makes it own the range.
func (a *applier) rangeAcquire(o *logpb.RangeAcquire) (*logpb.Result, error) {
	rec := a.ownRecord()
	if rec != nil && !rec.Ingesting {
		if slices.ContainsFunc(rec.Owned, func(h *logpb.HashRange) bool { return sameRange(h, o.Range) }) {
			return &logpb.Result{}, nil // acquired before
		}
		return &logpb.Result{Code: logpb.Code_CODE_CONFLICT, Message: fmt.Sprintf("%s owns other ranges", a.m.group)}, nil
	}
	d, err := digestRange(func(fn func(k, v []byte) bool) error { return a.b.Scan(a.m.space, userStart, userEnd, fn) }, o.Range)
	if err != nil {
		return nil, err
	}
	if d.Keys != o.Keys || d.Hash != o.Hash {
		return &logpb.Result{Code: logpb.Code_CODE_CONFLICT, Message: fmt.Sprintf(
			"the copy of [%#x,%#x) holds %d keys (hash %#x); %s held %d (hash %#x) at its fence", o.Range.Lo, o.Range.Hi, d.Keys, d.Hash, o.From, o.Keys, o.Hash)}, nil
	}
	a.b.Delete(a.m.space, keyIngestCursor)
	if err := a.setOwnership(&logpb.Ownership{Owned: []*logpb.HashRange{proto.CloneOf(o.Range)}}); err != nil {
		return nil, err
	}
	a.st.Revision = max(a.st.Revision, o.FenceRevision)
	return &logpb.Result{Count: d.Keys}, nil
}

// rangeDrop deletes a released range's data from the parent.
func (a *applier) rangeDrop(o *logpb.RangeDrop) (*logpb.Result, error) {
	rec := a.ownRecord()
	if rec == nil {
		return &logpb.Result{}, nil
	}
	i := slices.IndexFunc(rec.Moving, func(mr *logpb.MovingRange) bool { return sameRange(mr.Range, o.Range) })
	if i < 0 {
		return &logpb.Result{}, nil // dropped before
	}
	var keys [][]byte
	if err := a.b.Scan(a.m.space, userStart, userEnd, func(k, _ []byte) bool {
		if droppedKey(k, o.Range) {
			keys = append(keys, slices.Clone(k))
		}
		return true
	}); err != nil {
		return nil, err
	}
	for _, k := range keys {
		a.b.Delete(a.m.space, k)
	}
	rec.Moving = slices.Delete(rec.Moving, i, i+1)
	return &logpb.Result{Count: uint64(len(keys))}, a.setOwnership(rec)
}
