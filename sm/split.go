package sm

import (
	"bytes"
	"encoding/binary"
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
//  1. RangeTrack in P's log, at index T: P still serves the range, but
//     from T on every change to a key the split moves (a put or a delete,
//     leases included) also writes a mark, 0x13 <key> (keyMark), in the
//     same batch: the set of keys changed since T, on every replica alike.
//     It also adds the change to the range's running sum of changes
//     (trackChangesKey: the key's old pair out, its new one in), so that
//     the range's digest at any index >= T is its digest at T (the base,
//     RangeBase: a view's scan less the sum in that view, read while P
//     serves) plus the sum then.
//  2. The bulk copy: RangeIngest entries in C's log copy the range's
//     data, read chunk by chunk from a replica of P applied to >= T (each
//     chunk from its own view, at any index >= T), in key order, each
//     chunk applied only after the one before it (a resumed copy never
//     writes twice); the last one marks the bulk copy done. C serves
//     nothing meanwhile (its ownership is "ingesting").
//     Catch-up passes (RangeIngest replay, before the fence) then copy
//     the keys marked since the last pass began, each pass shorter than
//     the one before while P's write rate is below the copy's, so that
//     the replay after the fence has little left to do. A pass caught up
//     to index C (the lowest index its views were read at) leaves every
//     key last changed at or below C in its state as of that change.
//  3. RangeRelease in P's log, at index F (the fence): from F on, P
//     refuses, when applying, every op touching the range (RANGE_MOVING),
//     and every lease change (C copies the leases); the range's data in P
//     is frozen, the same on every replica at any index >= F, and so is
//     the set of marks. A release that carries the base records the
//     digest at F, the base plus the sum of changes, with no scan.
//  4. The final replay: RangeIngest entries (replay, final) in C's log
//     put every key marked as last changed above C's caught-up index, as
//     it is in P at F, or delete it where P has none. For every key of
//     the range, C then holds P's state at F: a key not marked did not
//     change between T and F, so every view >= T holds its state at F,
//     and the bulk copy read it (present or absent) from one of them; a
//     key last changed at or below the caught-up index was copied as of
//     that change by the pass that caught up; the rest is replayed from
//     the frozen state.
//  5. RangeAcquire in C's log checks the copy (key count and hash equal
//     P's at F, which the controller reads after the fence: recorded by
//     the release, or a scan when it carried no base), then C owns the
//     range; its revisions continue from P's at F. A copy that missed a
//     change fails the check: nothing is published. The pause holds no
//     scan of the range: C sums its digest as it writes, P's is recorded.
//     After the acquire, off the pause and before the drop, a scan of P's
//     frozen range verifies the recorded digest (VerifyFence): a change
//     the tracking missed (marked nowhere, so C's copy may lack it)
//     differs there, and the split stops, stuck, with P's copy kept.
//  6. RangeDrop entries in P's log delete the range's data (and marks)
//     from P, a bounded number of keys each; the last one makes the range
//     WRONG_GROUP there.
//
// Two more ops end or redo a split:
//
//   - RangeAbort in P's log, before F: the tracking ends, its marks go,
//     and the split is recorded as aborted (Ownership.aborted), so that
//     its RangeRelease (or RangeTrack) applied later is refused. Applied
//     after F it is refused instead, with F: P's log order alone decides
//     whether a split aborts.
//   - RangeReset in C's log, after a refused acquire: C's copy is
//     deleted in bounded steps (ingests and the acquire refused
//     meanwhile), then its copy state starts afresh with one more reset
//     counted, and the range is copied again from P's frozen state.
//
// Every op on the range is applied by exactly one group: P before F, C
// after its acquire, which commits after F; C starts from P's state at F.
// The range refuses writes from F to the acquire only: the replay of the
// keys changed during the copy, not the copy itself, nor a scan of it. A range released
// without a RangeTrack (none marked) is copied whole after its fence.

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
// drops r: its records, and the marks of the keys r moved (its leases
// stay: they are every group's).
func droppedKey(key []byte, r *logpb.HashRange) bool {
	if len(key) > 0 && key[0] == prefixSplitMark {
		return movedKey(key[1:], r)
	}
	rk, ok := rawRoute(key)
	return ok && inRange(r, RouteHash(rk))
}

func inRange(r *logpb.HashRange, h uint32) bool {
	return uint64(h) >= r.GetLo() && uint64(h) < r.GetHi()
}

// keyCopyState is how far a child's copy has gone (logpb.RangeCopyState;
// in the hashed state, so that a replica restored from a snapshot resumes
// exactly).
var keyCopyState = []byte{prefixOwnership, 'c'}

// dropCursorKey is where the parent's drop of r stopped (the last key it
// scanned).
func dropCursorKey(r *logpb.HashRange) []byte {
	return append([]byte{prefixOwnership, 'd'}, be64(r.GetLo())...)
}

// keyMark marks a stored key a tracked range moves as changed since the
// range's RangeTrack; its value is the index of the entry that last
// changed it.
func keyMark(key []byte) []byte { return prefixed(prefixSplitMark, key) }

// tracks reports whether the view marks changes (a split is copying a
// range the group still serves).
func (v *ownView) tracks() bool {
	return v != nil && v.rec != nil && len(v.rec.Tracking) > 0
}

// tracked returns the tracking record of r, or nil.
func (v *ownView) tracked(r *logpb.HashRange) *logpb.MovingRange {
	if v == nil || v.rec == nil {
		return nil
	}
	if i := slices.IndexFunc(v.rec.Tracking, func(mr *logpb.MovingRange) bool { return sameRange(mr.Range, r) }); i >= 0 {
		return v.rec.Tracking[i]
	}
	return nil
}

// markTracked marks every key the current op changed that a tracked
// range moves (the op succeeded; its writes are those since its save
// point), and adds the changes to the range's running digest
// (trackChangesKey): the digest at the fence is then the digest at the
// tracking plus these, with no scan of the range.
func (a *applier) markTracked() error {
	tracking := a.own.rec.Tracking
	ws, err := a.b.WrittenSinceSavePoint(a.m.space, func(k string) bool {
		return !plantedSplitUnmarked(k) && slices.ContainsFunc(tracking, func(tr *logpb.MovingRange) bool { return movedKey([]byte(k), tr.Range) })
	})
	if err != nil || len(ws) == 0 {
		return err
	}
	at := be64(a.st.Index)
	for _, tr := range tracking {
		var d RangeDigest
		changed := false
		for _, w := range ws {
			k := []byte(w.Key)
			if !movedKey(k, tr.Range) {
				continue
			}
			if !changed {
				if d, err = a.trackedChanges(tr.Range); err != nil {
					return err
				}
				changed = true
			}
			after, ok, err := a.b.Get(a.m.space, k)
			if err != nil {
				return err
			}
			if w.Existed {
				d.remove(k, w.Before)
			}
			if ok {
				d.add(k, after)
			}
			a.b.Put(a.m.space, keyMark(k), at)
		}
		if changed {
			a.b.Put(a.m.space, trackChangesKey(tr.Range), d.encode())
		}
	}
	return nil
}

// trackChangesKey holds the sum of the changes made to a tracked range
// since its RangeTrack (a RangeDigest of differences: each change removes
// the key's old pair and adds its new one), until its release.
func trackChangesKey(r *logpb.HashRange) []byte {
	return append([]byte{prefixOwnership, 'x'}, be64(r.GetLo())...)
}

// trackedChanges reads r's running changes through the batch.
func (a *applier) trackedChanges(r *logpb.HashRange) (RangeDigest, error) {
	v, _, err := a.b.Get(a.m.space, trackChangesKey(r))
	if err != nil {
		return RangeDigest{}, err
	}
	return decodeDigest(v)
}

// RangeDigest is the key count and hash of the keys a split copies: the
// sum (mod 2^64) of each stored key's FNV-1a hash (of its key and value),
// independent of order, so that a child keeps it as it writes its copy
// (RangeCopyState) and its acquire compares it without reading the copy.
type RangeDigest struct {
	Keys, Hash uint64
}

// keyHash is one pair's own hash (fnvPair from FNV-1a's start).
func keyHash(k, v []byte) uint64 { return fnvPair(fnvOffset64, k, v) }

// fnvPair continues the FNV-1a hash h over a pair, encoded as its key's
// length (uvarint), the key, its value's length and the value; computed in
// place (hash/fnv's hasher is an allocation per call).
func fnvPair(h uint64, k, v []byte) uint64 {
	var n [binary.MaxVarintLen64]byte
	h = fnv1a(h, binary.AppendUvarint(n[:0], uint64(len(k))))
	h = fnv1a(h, k)
	h = fnv1a(h, binary.AppendUvarint(n[:0], uint64(len(v))))
	return fnv1a(h, v)
}

// FNV-1a, 64 bits.
const (
	fnvOffset64 uint64 = 14695981039346656037
	fnvPrime64  uint64 = 1099511628211
)

func fnv1a(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime64
	}
	return h
}

func (d *RangeDigest) add(k, v []byte) { d.Keys, d.Hash = d.Keys+1, d.Hash+keyHash(k, v) }

func (d *RangeDigest) remove(k, v []byte) { d.Keys, d.Hash = d.Keys-1, d.Hash-keyHash(k, v) }

func (d RangeDigest) plus(e RangeDigest) RangeDigest {
	return RangeDigest{Keys: d.Keys + e.Keys, Hash: d.Hash + e.Hash}
}

func (d RangeDigest) minus(e RangeDigest) RangeDigest {
	return RangeDigest{Keys: d.Keys - e.Keys, Hash: d.Hash - e.Hash}
}

// encode stores a digest: keys and hash, 8 bytes each, big-endian.
func (d RangeDigest) encode() []byte { return append(be64(d.Keys), be64(d.Hash)...) }

// decodeDigest reads encode's bytes; none is the zero digest.
func decodeDigest(v []byte) (RangeDigest, error) {
	switch len(v) {
	case 0:
		return RangeDigest{}, nil
	case 16:
		return RangeDigest{Keys: binary.BigEndian.Uint64(v), Hash: binary.BigEndian.Uint64(v[8:])}, nil
	}
	return RangeDigest{}, fmt.Errorf("sm: a stored range digest of %d bytes, want 16", len(v))
}

// movedEnd bounds the stored keys a split moves: every prefix rawRoute
// knows, and the leases', is below the change log's.
var movedEnd = []byte{prefixEvent}

// digestRange digests the keys movedKey selects from a scan.
func digestRange(scan func(fn func(k, v []byte) bool) error, r *logpb.HashRange) (RangeDigest, error) {
	var d RangeDigest
	err := scan(func(k, v []byte) bool {
		if movedKey(k, r) {
			d.add(k, v)
		}
		return true
	})
	return d, err
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
// track r (its changes are marked from then on) or have released it (its
// data is frozen then), and have released it for a digest: an earlier
// view is refused (ErrNotReleased: the caller waits and asks again).
func (m *Machine) ReadRange(r *logpb.HashRange, after []byte, limit, maxBytes int, withDigest bool) (*RangeChunk, error) {
	out := &RangeChunk{}
	err := m.view(func(sn *rocks.Snapshot, st *logpb.AppliedState) error {
		out.AppliedIndex = st.GetIndex()
		own := m.own.Load()
		if !own.released(r) && (withDigest || own.tracked(r) == nil) {
			return fmt.Errorf("%w: %s has not released [%#x,%#x) at index %d", ErrNotReleased, m.group, r.GetLo(), r.GetHi(), st.GetIndex())
		}
		if withDigest {
			if mr := own.moving(r); mr.GetHasDigest() {
				out.Digest = &RangeDigest{Keys: mr.Keys, Hash: mr.Hash}
			} else {
				d, err := m.digestIn(sn, r)
				if err != nil {
					return err
				}
				out.Digest = &d
			}
		}
		start := userStart
		if len(after) > 0 {
			start = append(slices.Clone(after), 0)
		}
		size := 0
		out.Done = true
		return sn.Scan(m.space, start, movedEnd, func(k, v []byte) bool {
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

// digestIn scans r's keys in a view.
func (m *Machine) digestIn(sn *rocks.Snapshot, r *logpb.HashRange) (RangeDigest, error) {
	return digestRange(func(fn func(k, v []byte) bool) error { return sn.Scan(m.space, userStart, movedEnd, fn) }, r)
}

// RangeBase returns r's digest as of its tracking, from one view of this
// replica while it tracks r: the view's digest of the range less the
// changes summed since the tracking. It scans the range, before the
// fence, while the group serves it, so that the release can carry it and
// the digest at the fence needs no scan inside the write pause. ok is
// false once the replica released r (a release recorded before answers
// with what it recorded); ErrNotReleased before the tracking.
func (m *Machine) RangeBase(r *logpb.HashRange) (d RangeDigest, ok bool, err error) {
	err = m.view(func(sn *rocks.Snapshot, st *logpb.AppliedState) error {
		own := m.own.Load()
		if own.released(r) {
			return nil
		}
		if own.tracked(r) == nil {
			return fmt.Errorf("%w: %s does not track [%#x,%#x) at index %d", ErrNotReleased, m.group, r.GetLo(), r.GetHi(), st.GetIndex())
		}
		scanned, err := m.digestIn(sn, r)
		if err != nil {
			return err
		}
		v, _, err := sn.Get(m.space, trackChangesKey(r))
		if err != nil {
			return err
		}
		changes, err := decodeDigest(v)
		d, ok = scanned.minus(changes), true
		return err
	})
	return d, ok, err
}

// VerifyFence scans r, released on this replica, and compares its digest
// with the one its release recorded (the base plus the changes summed
// while tracking), which the child's acquire compared its copy with: a
// difference is a change the tracking missed, so the child's copy may
// lack it. checked is false when there is nothing to compare: no digest
// recorded (the acquire compared a scan), or the drop has begun.
func (m *Machine) VerifyFence(r *logpb.HashRange) (checked bool, mismatch string, err error) {
	err = m.view(func(sn *rocks.Snapshot, st *logpb.AppliedState) error {
		mr := m.own.Load().moving(r)
		if !mr.GetHasDigest() {
			return nil
		}
		if _, dropping, err := sn.Get(m.space, dropCursorKey(r)); err != nil || dropping {
			return err
		}
		scanned, err := m.digestIn(sn, r)
		if err != nil {
			return err
		}
		checked = true
		if scanned != (RangeDigest{Keys: mr.Keys, Hash: mr.Hash}) {
			mismatch = fmt.Sprintf("%s holds %d keys (hash %#x) of [%#x,%#x) at its fence (index %d), but its release recorded %d (hash %#x): the tracking missed a change",
				m.group, scanned.Keys, scanned.Hash, r.GetLo(), r.GetHi(), mr.FenceIndex, mr.Keys, mr.Hash)
		}
		return nil
	})
	return checked, mismatch, err
}

// ReadReplay reads, from one view of this replica, up to limit (and about
// maxBytes) of the keys r moves that were marked as changed since r's
// RangeTrack and last changed above index since, after key after (empty:
// from the start), each as it is in the view: a pair, or a deleted one
// where the key is absent. final asks for the state at the fence: the
// replica must have released r; else it must track it or have released
// it.
func (m *Machine) ReadReplay(r *logpb.HashRange, after []byte, since uint64, limit, maxBytes int, final bool) (*RangeChunk, error) {
	out := &RangeChunk{Done: true}
	err := m.view(func(sn *rocks.Snapshot, st *logpb.AppliedState) error {
		out.AppliedIndex = st.GetIndex()
		own := m.own.Load()
		if !own.released(r) && (final || own.tracked(r) == nil) {
			return fmt.Errorf("%w: %s has not released [%#x,%#x) at index %d", ErrNotReleased, m.group, r.GetLo(), r.GetHi(), st.GetIndex())
		}
		start := []byte{prefixSplitMark}
		if len(after) > 0 {
			start = append(keyMark(after), 0)
		}
		var keys [][]byte
		size := 0
		if err := sn.Scan(m.space, start, []byte{prefixSplitMark + 1}, func(k, v []byte) bool {
			if !movedKey(k[1:], r) || len(v) == 8 && binary.BigEndian.Uint64(v) <= since {
				return true
			}
			if len(keys) >= limit || (size >= maxBytes && len(keys) > 0) {
				out.Done = false
				return false
			}
			keys = append(keys, slices.Clone(k[1:]))
			size += len(k)
			return true
		}); err != nil {
			return err
		}
		for _, k := range keys {
			v, ok, err := sn.Get(m.space, k)
			if err != nil {
				return err
			}
			out.Pairs = append(out.Pairs, &logpb.RawPair{Key: k, Value: v, Deleted: !ok})
			size += len(v)
		}
		return nil
	})
	return out, err
}

// ErrNotReleased: the replica read has not applied the range's release
// (or, for a bulk copy, its tracking).
var ErrNotReleased = fmt.Errorf("sm: range not released")

// released reports whether the view holds r as released.
func (v *ownView) released(r *logpb.HashRange) bool { return v.moving(r) != nil }

// moving returns r's release record, or nil.
func (v *ownView) moving(r *logpb.HashRange) *logpb.MovingRange {
	if v == nil || v.rec == nil {
		return nil
	}
	if i := slices.IndexFunc(v.rec.Moving, func(mr *logpb.MovingRange) bool { return sameRange(mr.Range, r) }); i >= 0 {
		return v.rec.Moving[i]
	}
	return nil
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

// checkSplitting refuses a track or release the group cannot take (nil:
// it can).
func (a *applier) checkSplitting(rec *logpb.Ownership, r *logpb.HashRange, to string) *logpb.Result {
	if rec == nil || rec.Legacy || rec.Ingesting {
		return invalid("%s has no ranges of its own to split", a.m.group)
	}
	if to == "" || r == nil || r.Hi <= r.Lo {
		return invalid("split: a range and a group to release it to are required")
	}
	return nil
}

// rangeRelease fences r in the parent (idempotent).
func (a *applier) rangeRelease(o *logpb.RangeRelease) (*logpb.Result, error) {
	rec := a.ownRecord()
	if r := a.checkSplitting(rec, o.Range, o.To); r != nil {
		return r, nil
	}
	for _, mr := range rec.Moving {
		if sameRange(mr.Range, o.Range) && mr.To == o.To {
			v, err := marshal.Marshal(mr)
			return &logpb.Result{Value: v}, err
		}
	}
	if r := a.refuseAborted(rec, o.Range, o.To); r != nil {
		return r, nil
	}
	i := slices.IndexFunc(rec.Owned, func(h *logpb.HashRange) bool { return h.Lo <= o.Range.Lo && o.Range.Hi <= h.Hi })
	if i < 0 {
		return &logpb.Result{Code: logpb.Code_CODE_CONFLICT, Message: fmt.Sprintf("%s does not own [%#x,%#x)", a.m.group, o.Range.Lo, o.Range.Hi)}, nil
	}
	var trackIndex uint64
	if t := slices.IndexFunc(rec.Tracking, func(mr *logpb.MovingRange) bool { return sameRange(mr.Range, o.Range) }); t >= 0 {
		if rec.Tracking[t].To != o.To {
			return &logpb.Result{Code: logpb.Code_CODE_CONFLICT, Message: fmt.Sprintf("%s tracks [%#x,%#x) for %s", a.m.group, o.Range.Lo, o.Range.Hi, rec.Tracking[t].To)}, nil
		}
		trackIndex = rec.Tracking[t].TrackIndex
		rec.Tracking = slices.Delete(rec.Tracking, t, t+1)
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
	mr := &logpb.MovingRange{Range: proto.CloneOf(o.Range), To: o.To, FenceIndex: a.st.Index, FenceRevision: a.st.Revision, TrackIndex: trackIndex}
	if trackIndex > 0 {
		// The digest at the fence: the base, as of the tracking, plus
		// the changes summed since (none: a scan gives it).
		changes, err := a.trackedChanges(o.Range)
		if err != nil {
			return nil, err
		}
		a.b.Delete(a.m.space, trackChangesKey(o.Range))
		if o.HasBase {
			d := RangeDigest{Keys: o.BaseKeys, Hash: o.BaseHash}.plus(changes)
			mr.HasDigest, mr.Keys, mr.Hash = true, d.Keys, d.Hash
		}
	}
	rec.Moving = append(rec.Moving, mr)
	if err := a.setOwnership(rec); err != nil {
		return nil, err
	}
	v, err := marshal.Marshal(mr)
	return &logpb.Result{Value: v}, err
}

// rangeTrack begins marking the changes of a range the group still
// serves (idempotent; once released, it answers the release).
func (a *applier) rangeTrack(o *logpb.RangeTrack) (*logpb.Result, error) {
	rec := a.ownRecord()
	if r := a.checkSplitting(rec, o.Range, o.To); r != nil {
		return r, nil
	}
	answer := func(mr *logpb.MovingRange) (*logpb.Result, error) {
		v, err := marshal.Marshal(mr)
		return &logpb.Result{Value: v}, err
	}
	for _, mr := range slices.Concat(rec.Moving, rec.Tracking) {
		if sameRange(mr.Range, o.Range) && mr.To == o.To {
			return answer(mr)
		}
	}
	if r := a.refuseAborted(rec, o.Range, o.To); r != nil {
		return r, nil
	}
	if len(rec.Moving) > 0 || len(rec.Tracking) > 0 {
		return &logpb.Result{Code: logpb.Code_CODE_CONFLICT, Message: fmt.Sprintf("%s is splitting another range", a.m.group)}, nil
	}
	if !slices.ContainsFunc(rec.Owned, func(h *logpb.HashRange) bool { return h.Lo <= o.Range.Lo && o.Range.Hi <= h.Hi }) {
		return &logpb.Result{Code: logpb.Code_CODE_CONFLICT, Message: fmt.Sprintf("%s does not own [%#x,%#x)", a.m.group, o.Range.Lo, o.Range.Hi)}, nil
	}
	tr := &logpb.MovingRange{Range: proto.CloneOf(o.Range), To: o.To, TrackIndex: a.st.Index}
	rec.Tracking = append(rec.Tracking, tr)
	if err := a.setOwnership(rec); err != nil {
		return nil, err
	}
	return answer(tr)
}

// aborted reports whether rec records the split of r to child as aborted.
func aborted(rec *logpb.Ownership, r *logpb.HashRange, to string) bool {
	return slices.ContainsFunc(rec.GetAborted(), func(mr *logpb.MovingRange) bool { return sameRange(mr.Range, r) && mr.To == to })
}

// refuseAborted refuses a track or release of a split that was aborted.
func (a *applier) refuseAborted(rec *logpb.Ownership, r *logpb.HashRange, to string) *logpb.Result {
	if !aborted(rec, r, to) {
		return nil
	}
	return &logpb.Result{Code: logpb.Code_CODE_CONFLICT, Message: fmt.Sprintf("the split of [%#x,%#x) to %s was aborted", r.GetLo(), r.GetHi(), to)}
}

// rangeAbort ends a split in the parent before its fence (idempotent).
// Whichever of it and the range's RangeRelease this log applies first
// decides: an abort after the release is refused with the released
// range; a release after the abort is refused.
func (a *applier) rangeAbort(o *logpb.RangeAbort) (*logpb.Result, error) {
	rec := a.ownRecord()
	if r := a.checkSplitting(rec, o.Range, o.To); r != nil {
		return r, nil
	}
	if aborted(rec, o.Range, o.To) {
		return &logpb.Result{}, nil
	}
	for _, mr := range rec.Moving {
		if sameRange(mr.Range, o.Range) && mr.To == o.To {
			v, err := marshal.Marshal(mr)
			return &logpb.Result{Code: logpb.Code_CODE_CONFLICT, Value: v, Message: fmt.Sprintf(
				"%s released [%#x,%#x) to %s at index %d: past the fence, the split cannot abort", a.m.group, o.Range.Lo, o.Range.Hi, o.To, mr.FenceIndex)}, err
		}
	}
	if t := slices.IndexFunc(rec.Tracking, func(mr *logpb.MovingRange) bool { return sameRange(mr.Range, o.Range) && mr.To == o.To }); t >= 0 {
		rec.Tracking = slices.Delete(rec.Tracking, t, t+1)
		// The marks of the range's changes go with its tracking (no other
		// range is tracked: a group splits one range at a time).
		var marks [][]byte
		if err := a.b.Scan(a.m.space, []byte{prefixSplitMark}, []byte{prefixSplitMark + 1}, func(k, _ []byte) bool {
			if movedKey(k[1:], o.Range) {
				marks = append(marks, slices.Clone(k))
			}
			return true
		}); err != nil {
			return nil, err
		}
		for _, k := range marks {
			a.b.Delete(a.m.space, k)
		}
		a.b.Delete(a.m.space, trackChangesKey(o.Range))
	}
	rec.Aborted = append(rec.Aborted, &logpb.MovingRange{Range: proto.CloneOf(o.Range), To: o.To})
	return &logpb.Result{}, a.setOwnership(rec)
}

// Reset steps: the default number of copied keys one RangeReset deletes,
// and its largest.
const (
	resetChunkKeys    = 4096
	resetChunkMaxKeys = 1 << 16
)

// rangeReset deletes the child's copy, in bounded steps, so that it is
// copied again (its acquire was refused).
func (a *applier) rangeReset(o *logpb.RangeReset) (*logpb.Result, error) {
	rec := a.ownRecord()
	switch {
	case rec == nil:
		return &logpb.Result{Succeeded: true}, nil // nothing copied
	case !rec.Ingesting:
		return &logpb.Result{Code: logpb.Code_CODE_CONFLICT, Message: fmt.Sprintf("%s acquired its range: its copy is not reset", a.m.group)}, nil
	case o.Range == nil || o.Range.Hi <= o.Range.Lo:
		return invalid("reset: a range is required"), nil
	}
	st, err := a.copyState()
	if err != nil {
		return nil, err
	}
	if st.Resets != o.ExpectResets {
		return ingestResult(logpb.Code_CODE_OK, 0, st, "") // an earlier round's reset, done
	}
	limit := int(o.Limit)
	if limit <= 0 {
		limit = resetChunkKeys
	}
	limit = min(limit, resetChunkMaxKeys)
	var keys [][]byte
	more := false
	if err := a.b.Scan(a.m.space, userStart, movedEnd, func(k, _ []byte) bool {
		if !movedKey(k, o.Range) {
			return true
		}
		if len(keys) >= limit {
			more = true
			return false
		}
		keys = append(keys, slices.Clone(k))
		return true
	}); err != nil {
		return nil, err
	}
	for _, k := range keys {
		a.b.Delete(a.m.space, k)
	}
	if more {
		st.Resetting = true
	} else {
		st = &logpb.RangeCopyState{Resets: st.Resets + 1}
	}
	if err := a.write(keyCopyState, st); err != nil {
		return nil, err
	}
	res, err := ingestResult(logpb.Code_CODE_OK, len(keys), st, "")
	if res != nil {
		res.Succeeded = !more
	}
	return res, err
}

// copyState reads the child's copy state.
func (a *applier) copyState() (*logpb.RangeCopyState, error) {
	st := &logpb.RangeCopyState{}
	if _, _, err := a.get(keyCopyState, st); err != nil {
		return nil, err
	}
	return st, nil
}

// ingestResult answers an ingest with the copy's state.
func ingestResult(code logpb.Code, count int, st *logpb.RangeCopyState, msg string) (*logpb.Result, error) {
	v, err := marshal.Marshal(st)
	return &logpb.Result{Code: code, Count: uint64(count), Value: v, Message: msg}, err
}

// rangeIngest stores a chunk of the copy, or of its replay, in the child.
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
		if slices.ContainsFunc(rec.Owned, func(h *logpb.HashRange) bool { return sameRange(h, o.Range) }) {
			return ingestResult(logpb.Code_CODE_CONFLICT, 0, &logpb.RangeCopyState{Acquired: true}, "the range is acquired")
		}
		return invalid("%s is not copying a range", a.m.group), nil
	}
	st, err := a.copyState()
	if err != nil {
		return nil, err
	}
	if st.Resetting {
		return ingestResult(logpb.Code_CODE_CONFLICT, 0, st, "the copy is being reset")
	}
	for _, p := range o.Pairs {
		if !movedKey(p.Key, o.Range) || p.Key[0] == prefixOwnership {
			return invalid("ingest: key %x is not of the range", p.Key), nil
		}
	}
	if o.Replay {
		return a.rangeReplay(o, st)
	}
	if st.Done || !bytes.Equal(st.Cursor, o.After) {
		return ingestResult(logpb.Code_CODE_CONFLICT, 0, st, "the copy is at another key")
	}
	last := o.After
	for _, p := range o.Pairs {
		if bytes.Compare(p.Key, last) <= 0 || p.Deleted {
			return invalid("ingest: key %x is out of order", p.Key), nil
		}
		if err := a.ingestWrite(st, p); err != nil {
			return nil, err
		}
		last = p.Key
	}
	st.Cursor = slices.Clone(last)
	st.Done = o.Done
	if err := a.write(keyCopyState, st); err != nil {
		return nil, err
	}
	return ingestResult(logpb.Code_CODE_OK, len(o.Pairs), st, "")
}

// ingestWrite writes a pair of the copy (a put, or a delete) and keeps the
// copy's digest in st.
func (a *applier) ingestWrite(st *logpb.RangeCopyState, p *logpb.RawPair) error {
	old, ok, err := a.b.Get(a.m.space, p.Key)
	if err != nil {
		return err
	}
	d := RangeDigest{Keys: st.Keys, Hash: st.Hash}
	if ok {
		d.remove(p.Key, old)
	}
	if p.Deleted {
		a.b.Delete(a.m.space, p.Key)
	} else {
		a.b.Put(a.m.space, p.Key, p.Value)
		d.add(p.Key, p.Value)
	}
	st.Keys, st.Hash = d.Keys, d.Hash
	return nil
}

// rangeReplay stores a chunk of a catch-up pass, or of the final replay,
// in the child (RangeIngest has the rules).
func (a *applier) rangeReplay(o *logpb.RangeIngest, st *logpb.RangeCopyState) (*logpb.Result, error) {
	switch {
	case !st.Done:
		return ingestResult(logpb.Code_CODE_CONFLICT, 0, st, "the bulk copy is not done")
	case o.Final && o.Since > st.CaughtUp:
		return ingestResult(logpb.Code_CODE_CONFLICT, 0, st, "the final replay starts above the caught-up index")
	case !o.Final && (st.Final || o.Since != st.CaughtUp || !bytes.Equal(o.After, st.PassCursor)):
		return ingestResult(logpb.Code_CODE_CONFLICT, 0, st, "the catch-up is elsewhere")
	case !o.Final && o.ViewIndex == 0:
		return invalid("catch-up: the view's index is required"), nil
	}
	last := o.After
	for _, p := range o.Pairs {
		if !o.Final && bytes.Compare(p.Key, last) <= 0 {
			return invalid("catch-up: key %x is out of order", p.Key), nil
		}
		if err := a.ingestWrite(st, p); err != nil {
			return nil, err
		}
		last = p.Key
	}
	if o.Final {
		st.Final = true
		if err := a.write(keyCopyState, st); err != nil {
			return nil, err
		}
		return ingestResult(logpb.Code_CODE_OK, len(o.Pairs), st, "")
	}
	st.PassCursor = slices.Clone(last)
	if st.PassMin == 0 || o.ViewIndex < st.PassMin {
		st.PassMin = o.ViewIndex
	}
	if o.Done {
		st.CaughtUp = max(st.CaughtUp, st.PassMin)
		st.PassCursor, st.PassMin = nil, 0
	}
	if err := a.write(keyCopyState, st); err != nil {
		return nil, err
	}
	return ingestResult(logpb.Code_CODE_OK, len(o.Pairs), st, "")
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
	st, err := a.copyState()
	if err != nil {
		return nil, err
	}
	d := RangeDigest{Keys: st.Keys, Hash: st.Hash}
	if st.Resetting || d.Keys != o.Keys || d.Hash != o.Hash {
		return ingestResult(logpb.Code_CODE_CONFLICT, 0, st, fmt.Sprintf(
			"the copy of [%#x,%#x) holds %d keys (hash %#x); %s held %d (hash %#x) at its fence", o.Range.Lo, o.Range.Hi, d.Keys, d.Hash, o.From, o.Keys, o.Hash))
	}
	a.b.Delete(a.m.space, keyCopyState)
	if err := a.setOwnership(&logpb.Ownership{Owned: []*logpb.HashRange{proto.CloneOf(o.Range)}}); err != nil {
		return nil, err
	}
	a.st.Revision = max(a.st.Revision, o.FenceRevision)
	return &logpb.Result{Count: d.Keys}, nil
}

// Drop steps: the default number of keys one RangeDrop deletes, its
// largest, and how many keys it scans at most per key it may delete (the
// parent's other keys lie between the range's: the hash scatters them).
const (
	dropChunkKeys    = 4096
	dropChunkMaxKeys = 1 << 16
	dropScanFactor   = 8
)

// rangeDrop deletes the next keys of a released range's data from the
// parent, from the stored cursor on; the step that reaches the end
// removes the range.
func (a *applier) rangeDrop(o *logpb.RangeDrop) (*logpb.Result, error) {
	rec := a.ownRecord()
	if rec == nil {
		return &logpb.Result{Succeeded: true}, nil
	}
	i := slices.IndexFunc(rec.Moving, func(mr *logpb.MovingRange) bool { return sameRange(mr.Range, o.Range) })
	if i < 0 {
		return &logpb.Result{Succeeded: true}, nil // dropped before
	}
	limit := int(o.Limit)
	if limit <= 0 {
		limit = dropChunkKeys
	}
	limit = min(limit, dropChunkMaxKeys)
	curKey := dropCursorKey(o.Range)
	cur, _, err := a.b.Get(a.m.space, curKey)
	if err != nil {
		return nil, err
	}
	start := userStart
	if len(cur) > 0 {
		start = append(cur, 0)
	}
	var keys [][]byte
	var last []byte
	scanned, done := 0, true
	if err := a.b.Scan(a.m.space, start, userEnd, func(k, _ []byte) bool {
		if len(keys) >= limit || scanned >= dropScanFactor*limit {
			done = false
			return false
		}
		scanned++
		last = slices.Clone(k)
		if droppedKey(k, o.Range) {
			keys = append(keys, last)
		}
		return true
	}); err != nil {
		return nil, err
	}
	for _, k := range keys {
		a.b.Delete(a.m.space, k)
	}
	if !done {
		a.b.Put(a.m.space, curKey, last)
		return &logpb.Result{Count: uint64(len(keys))}, nil
	}
	a.b.Delete(a.m.space, curKey)
	rec.Moving = slices.Delete(rec.Moving, i, i+1)
	a.dropped = true
	return &logpb.Result{Count: uint64(len(keys)), Succeeded: true}, a.setOwnership(rec)
}

// CopyState returns how far this group's copy of a split's range has gone
// (acquired: it owns ranges; nil: it has copied nothing and owns none).
func (m *Machine) CopyState() (*logpb.RangeCopyState, error) {
	var st *logpb.RangeCopyState
	err := m.view(func(sn *rocks.Snapshot, _ *logpb.AppliedState) error {
		own := m.own.Load()
		switch {
		case own == nil || own.rec == nil:
			return nil
		case !own.rec.Ingesting:
			st = &logpb.RangeCopyState{Acquired: true}
			return nil
		}
		v, _, err := sn.Get(m.space, keyCopyState)
		if err != nil {
			return err
		}
		st = &logpb.RangeCopyState{}
		return proto.Unmarshal(v, st)
	})
	return st, err
}
