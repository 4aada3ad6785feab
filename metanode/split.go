package metanode

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// Online split (sm/split.go has what each group's log does). A split is
// recorded on the parent's directory record (logpb.Split) and moves
// through phases, each recorded in metadata-0 before the next step, every
// step idempotent, so that whichever node leads metadata-0 resumes it
// (splitLoop runs there):
//
//	prepared   StartSplit recorded the child (creating, on the parent's
//	           replicas, which bootstrap it as a first start does) and the
//	           range it takes, at a new version. Abort is still possible.
//	copied     the parent's log tracks the range (RangeTrack: changes to
//	           it are marked from then on) and the child holds a copy of
//	           it read while the parent still served it (RangeIngest,
//	           resumable from the child's cursor). Abort is still possible.
//	           Passes that copy the keys changed meanwhile (catch-up)
//	           precede the fence.
//	fenced     the parent's log released the range (RangeRelease, with
//	           the range's digest as of its tracking, scanned just before
//	           while the parent served it): the point of no return. Writes
//	           to the range are refused from here until the child
//	           acquires it.
//	acquired   the keys marked as changed since the last catch-up were
//	           copied again as they are at the fence (RangeIngest final
//	           replay; the rest of the bulk copy first, had the fence come
//	           before its end), and
//	           the child's log acquired the range after checking the
//	           copy's count and hash against the parent's at the fence
//	           (RangeAcquire).
//	published  the directory maps the range to the child (active) and
//	           the parent keeps the rest, both at the new version.
//	(done)     a scan of the parent's frozen range verified the digest
//	           the acquire compared (else the split stops, stuck, the
//	           parent's copy kept), and the parent's log dropped its copy
//	           (RangeDrop, in bounded steps); the split record is cleared.
//
// Abort (AbortSplit, before the fence only): the directory records
// aborting (compared on the parent's configuration version), then the
// parent's log applies RangeAbort: it ends the tracking, deletes the
// marks, and refuses the range's RangeRelease from then on. The point of
// no return is the parent's log order: a RangeRelease applied before the
// abort (a step that raced it) makes the RangeAbort refused, and the split
// goes back to fenced and completes (AbortSplit answers SPLIT_FENCED).
// Once the parent refused the fence, the child's record goes to deleting
// with no replicas (every node then deletes its replica, column family
// and snapshots; the record stays, so names are never reused) and the
// parent's record loses its split, its ranges as they were. Each step is
// idempotent: a controller killed mid-abort is resumed by the next.
//
// A refused acquire (the child's copy differs from the parent's at the
// fence) redoes the copy: RangeReset clears the child's copy (bounded
// steps) and the next step copies the frozen range again, at most
// splitMaxResets times (the child's log counts them); then the split
// stays fenced with stuck recorded, logged at error level, shown by
// group list (split_error) and by meta_split_stuck, and is not retried.
//
// Each directory step is compared on the parent's (and child's)
// configuration version, so a split racing a move of the same group, or
// a resumed controller racing a deposed one, fails its compare cleanly.

// splitHook, when set (tests), runs before each step of a split driven on
// this process with the phase the directory records; it may block.
var splitHook atomic.Pointer[func(ctx context.Context, group string, phase logpb.SplitPhase)]

const callSplitRead = "metanode.split-read/v1"

// Copy chunks: at most this many keys, and about this many bytes; a drop
// step deletes at most splitDropKeys keys. Catch-up passes before the
// fence: at most splitCatchUpPasses, until one copies at most
// splitCatchUpKeys keys (what is left for after the fence is then about
// what changed during that short pass).
const (
	splitChunkKeys     = 1024
	splitChunkBytes    = 1 << 20
	splitDropKeys      = 4096
	splitCatchUpPasses = 4
	splitCatchUpKeys   = 256
	splitMaxResets     = 3
)

// splitCopyHook, when set (tests), sees each chunk of a bulk copy before
// the child ingests it (it may change it: a copy that differs from the
// parent's).
var splitCopyHook atomic.Pointer[func(child string, pairs []*logpb.RawPair)]

// splitFenceHook, when set (tests), runs after a split's base is read and
// before its release is proposed: writes made there fall between the two.
var splitFenceHook atomic.Pointer[func(ctx context.Context, group string)]

// StartSplit records a split of group on metadata-0, which this node must
// lead: a new group takes [mid, hi) of the group's range holding at (0:
// the middle of its widest range). It returns the new group's name and
// the range it takes; the split then runs in the background.
func (n *Node) StartSplit(ctx context.Context, group string, at uint64) (string, *logpb.HashRange, error) {
	md, err := n.group(metapb.MetadataGroup)
	if err != nil {
		return "", nil, err
	}
	if !md.ready() {
		return "", nil, md.notLeader()
	}
	d, err := md.fsm.Directory()
	if err != nil {
		return "", nil, err
	}
	rec := d.Group(group)
	switch {
	case rec == nil:
		return "", nil, invalidf("group", "no group %q", group)
	case rec.Kind != "data" && rec.Kind != "offset":
		return "", nil, invalidf("group", "%s is a %s group: only data and offset groups split", group, rec.Kind)
	case len(rec.Ranges) == 0:
		return "", nil, invalidf("group", "%s has no ranges (the cluster routes by a group count that is not a power of two): it cannot split", group)
	case rec.Split != nil || rec.State != logpb.GroupState_GROUP_STATE_ACTIVE:
		return "", nil, metapb.NewError(metapb.ReasonRevisionConflict, map[string]string{metapb.MetaGroup: group},
			"%s is changing (a split under way, or not active yet): try again once it settles", group)
	}
	var r *logpb.HashRange
	var mid uint64
	if at == 0 {
		for _, h := range rec.Ranges {
			if r == nil || h.Hi-h.Lo > r.Hi-r.Lo {
				r = h
			}
		}
		mid = r.Lo + (r.Hi-r.Lo)/2
	} else {
		i := slices.IndexFunc(rec.Ranges, func(h *logpb.HashRange) bool { return h.Lo <= at && at < h.Hi })
		if i < 0 {
			var have []string
			for _, h := range rec.Ranges {
				have = append(have, fmt.Sprintf("[%#x,%#x)", h.Lo, h.Hi))
			}
			return "", nil, invalidf("at", "%s owns no range holding %#x (it owns %s)", group, at, strings.Join(have, ","))
		}
		r, mid = rec.Ranges[i], at
	}
	if mid <= r.Lo || mid >= r.Hi {
		return "", nil, invalidf("at", "%#x does not cut [%#x,%#x) in two", mid, r.Lo, r.Hi)
	}
	// The new name and version: above every group's of the kind (names
	// are never reused: records are never deleted), so a stale replica of
	// another group never meets it.
	next, version := 0, uint64(0)
	for _, g := range d.Groups {
		if g.Kind != rec.Kind {
			continue
		}
		if i := lastIndex(g.Name); i >= next {
			next = i + 1
		}
		for _, h := range g.Ranges {
			version = max(version, h.Version)
		}
		if g.Split != nil {
			version = max(version, g.Split.Range.GetVersion())
		}
	}
	child := &logpb.GroupRecord{Name: rec.Kind + "-" + strconv.Itoa(next), Kind: rec.Kind, Parent: group,
		State: logpb.GroupState_GROUP_STATE_CREATING}
	for _, rp := range rec.Replicas {
		child.Replicas = append(child.Replicas, &logpb.Replica{Node: rp.Node, Voter: true})
	}
	parent := proto.CloneOf(rec)
	take := &logpb.HashRange{Lo: mid, Hi: r.Hi, Version: version + 1}
	parent.Split = &logpb.Split{Child: child.Name, Range: take, Phase: logpb.SplitPhase_SPLIT_PHASE_PREPARED}
	if err := n.putGroups(ctx, []*logpb.GroupRecord{parent, child}, []uint64{rec.ConfVer, 0}); err != nil {
		return "", nil, err
	}
	n.log.Info("split recorded", "group", group, "child", child.Name, "lo", take.Lo, "hi", take.Hi, "version", take.Version)
	return child.Name, take, nil
}

// AbortSplit aborts the split of group under way, on metadata-0 (which
// this node must lead), if the parent's log has not fenced its range: it
// records the abort, then the parent's log refuses the fence (RangeAbort),
// and returns the child; deleting the child and clearing the record
// follow in the background (splitLoop). A split past its fence, or one
// whose fence the parent's log applied before the abort, is refused with
// SPLIT_FENCED and goes on.
func (n *Node) AbortSplit(ctx context.Context, group string) (string, error) {
	md, err := n.group(metapb.MetadataGroup)
	if err != nil {
		return "", err
	}
	if !md.ready() {
		return "", md.notLeader()
	}
	d, err := md.fsm.Directory()
	if err != nil {
		return "", err
	}
	rec := d.Group(group)
	switch {
	case rec == nil:
		return "", invalidf("group", "no group %q", group)
	case rec.Split == nil:
		return "", metapb.NewError(metapb.ReasonNotFound, map[string]string{metapb.MetaField: "group"}, "no split of %s is under way", group)
	}
	sp := rec.Split
	switch sp.Phase {
	case logpb.SplitPhase_SPLIT_PHASE_PREPARED, logpb.SplitPhase_SPLIT_PHASE_COPIED:
		next := proto.CloneOf(rec)
		next.Split.Phase = logpb.SplitPhase_SPLIT_PHASE_ABORTING
		if err := n.putGroups(ctx, []*logpb.GroupRecord{next}, []uint64{rec.ConfVer}); err != nil {
			return "", err
		}
		next.ConfVer = rec.ConfVer + 1
		rec = next
		n.log.Info("split abort recorded", "group", group, "child", sp.Child)
	case logpb.SplitPhase_SPLIT_PHASE_ABORTING:
	default:
		return "", splitFenced(group, sp)
	}
	mr, err := n.abortInParent(ctx, rec.Name, sp)
	if err != nil {
		return "", err
	}
	if mr != nil {
		sp = proto.CloneOf(sp)
		sp.FenceIndex = mr.FenceIndex
		if err := n.abortTooLate(ctx, rec, mr); err != nil {
			return "", err
		}
		return "", splitFenced(group, sp)
	}
	return sp.Child, nil
}

// splitFenced refuses an abort of a split past its fence.
func splitFenced(group string, sp *logpb.Split) error {
	return metapb.NewError(metapb.ReasonSplitFenced, map[string]string{metapb.MetaGroup: group},
		"the split of %s into %s passed its fence (phase %s, the parent's log fenced the range at index %d): it cannot abort, and goes on to its end",
		group, sp.Child, strings.ToLower(strings.TrimPrefix(sp.Phase.String(), "SPLIT_PHASE_")), sp.FenceIndex)
}

// abortInParent proposes the split's RangeAbort to the parent: nil when
// the parent's log refuses the fence from now on, or the MovingRange it
// released before (the abort came too late).
func (n *Node) abortInParent(ctx context.Context, parent string, sp *logpb.Split) (*logpb.MovingRange, error) {
	res, err := n.Propose(ctx, parent, &logpb.Op{Op: &logpb.Op_RangeAbort{RangeAbort: &logpb.RangeAbort{Range: sp.Range, To: sp.Child}}})
	if err != nil {
		return nil, fmt.Errorf("abort in %s: %w", parent, err)
	}
	switch {
	case res.Code == logpb.Code_CODE_OK:
		return nil, nil
	case res.Code == logpb.Code_CODE_CONFLICT && len(res.Value) > 0:
		mr := &logpb.MovingRange{}
		return mr, proto.Unmarshal(res.Value, mr)
	}
	return nil, fmt.Errorf("abort refused by %s: %s", parent, res.Message)
}

// abortTooLate puts a split whose abort the parent's log refused (it had
// released the range) back to fenced, with the fence the log recorded.
func (n *Node) abortTooLate(ctx context.Context, rec *logpb.GroupRecord, mr *logpb.MovingRange) error {
	next := proto.CloneOf(rec)
	next.Split.Phase, next.Split.FenceIndex, next.Split.FenceRevision = logpb.SplitPhase_SPLIT_PHASE_FENCED, mr.FenceIndex, mr.FenceRevision
	n.log.Warn("split abort came after the parent's fence: the split goes on", "group", rec.Name, "child", rec.Split.Child, "fence_index", mr.FenceIndex)
	return n.putGroups(ctx, []*logpb.GroupRecord{next}, []uint64{rec.ConfVer})
}

// lastIndex is the number after a group name's last '-' (-1 if none).
func lastIndex(name string) int {
	i, err := strconv.Atoi(name[strings.LastIndexByte(name, '-')+1:])
	if err != nil {
		return -1
	}
	return i
}

// putGroups writes records in metadata-0, each compared on its expected
// configuration version (a mismatch is REVISION_CONFLICT).
func (n *Node) putGroups(ctx context.Context, recs []*logpb.GroupRecord, expect []uint64) error {
	op := &logpb.GroupsPut{}
	for i, r := range recs {
		op.Puts = append(op.Puts, &logpb.GroupPut{Group: r, ExpectedConfVer: expect[i]})
	}
	res, err := n.ProposeMetadata(ctx, &logpb.Op{Op: &logpb.Op_GroupsPut{GroupsPut: op}})
	if err != nil {
		return err
	}
	switch res.Code {
	case logpb.Code_CODE_OK:
		return nil
	case logpb.Code_CODE_COMPARE_FAILED:
		return metapb.NewError(metapb.ReasonRevisionConflict, map[string]string{metapb.MetaGroup: recs[0].Name},
			"%s changed meanwhile (%s): try again", recs[0].Name, res.Message)
	}
	return fmt.Errorf("%w: %s", ErrInvalid, res.Message)
}

// splitLoop drives every split the directory records, while this node
// leads metadata-0.
func (n *Node) splitLoop(ctx context.Context) {
	md, err := n.group(metapb.MetadataGroup)
	if err != nil {
		return
	}
	for ctx.Err() == nil {
		changed := md.fsm.Changed()
		busy := false
		if d, err := md.fsm.Directory(); err == nil {
			for _, rec := range d.Groups {
				if rec.Split == nil || rec.Split.Stuck != "" {
					continue // none, or one that gave up (it waits for an operator)
				}
				busy = true
				if err := n.splitStep(ctx, d, rec); err != nil && ctx.Err() == nil {
					n.log.Info("split step", "group", rec.Name, "phase", rec.Split.Phase, "err", err)
				}
			}
		}
		wait := n.cfg.ReconcileInterval
		if busy {
			wait = n.cfg.ElectionTimeout / 4
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(wait):
		}
	}
}

// splitStep takes one step of a split and records it.
func (n *Node) splitStep(ctx context.Context, d *state.Directory, rec *logpb.GroupRecord) error {
	sp := rec.Split
	child := d.Group(sp.Child)
	if child == nil {
		return fmt.Errorf("split of %s: no record of %s", rec.Name, sp.Child)
	}
	if hook := splitHook.Load(); hook != nil {
		(*hook)(ctx, rec.Name, sp.Phase)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	next := proto.CloneOf(rec)
	switch sp.Phase {
	case logpb.SplitPhase_SPLIT_PHASE_PREPARED:
		// The parent marks the range's changes from here on; the child
		// copies the range while the parent serves it.
		mr, err := n.proposeMoving(ctx, rec.Name, &logpb.Op{Op: &logpb.Op_RangeTrack{RangeTrack: &logpb.RangeTrack{Range: sp.Range, To: sp.Child}}})
		if err != nil {
			return fmt.Errorf("track: %w", err)
		}
		if mr.FenceIndex == 0 {
			if _, err := n.copyBulk(ctx, rec.Name, sp); err != nil {
				return fmt.Errorf("copy: %w", err)
			}
		}
		next.Split.Phase = logpb.SplitPhase_SPLIT_PHASE_COPIED
		return n.putGroups(ctx, []*logpb.GroupRecord{next}, []uint64{rec.ConfVer})
	case logpb.SplitPhase_SPLIT_PHASE_COPIED:
		// Catch up with the changes made during the copy, so that the
		// replay after the fence has little left to do.
		if err := n.catchUp(ctx, rec.Name, sp); err != nil {
			return fmt.Errorf("catch up: %w", err)
		}
		// The range's digest as of its tracking, scanned now while the
		// parent serves it: the release records the digest at the fence
		// from it, so that no scan of the range falls in the pause.
		base, err := n.readChunk(ctx, &logpb.SplitRead{Group: rec.Name, Range: sp.Range, Base: true})
		if err != nil {
			return fmt.Errorf("base: %w", err)
		}
		if hook := splitFenceHook.Load(); hook != nil {
			(*hook)(ctx, rec.Name)
		}
		mr, err := n.proposeMoving(ctx, rec.Name, &logpb.Op{Op: &logpb.Op_RangeRelease{RangeRelease: &logpb.RangeRelease{Range: sp.Range, To: sp.Child,
			HasBase: base.HasDigest, BaseKeys: base.Keys, BaseHash: base.Hash}}})
		if err != nil {
			return fmt.Errorf("fence: %w", err)
		}
		next.Split.Phase, next.Split.FenceIndex, next.Split.FenceRevision = logpb.SplitPhase_SPLIT_PHASE_FENCED, mr.FenceIndex, mr.FenceRevision
		return n.putGroups(ctx, []*logpb.GroupRecord{next}, []uint64{rec.ConfVer})
	case logpb.SplitPhase_SPLIT_PHASE_ABORTING:
		mr, err := n.abortInParent(ctx, rec.Name, sp)
		if err != nil {
			return err
		}
		if mr != nil {
			return n.abortTooLate(ctx, rec, mr)
		}
		next.Split = nil
		c := proto.CloneOf(child)
		c.State, c.Replicas, c.Ranges = logpb.GroupState_GROUP_STATE_DELETING, nil, nil
		if err := n.putGroups(ctx, []*logpb.GroupRecord{next, c}, []uint64{rec.ConfVer, child.ConfVer}); err != nil {
			return err
		}
		n.log.Info("split aborted: the new group is deleted", "group", rec.Name, "child", sp.Child)
		return nil
	case logpb.SplitPhase_SPLIT_PHASE_FENCED:
		if err := n.copyRange(ctx, rec.Name, sp); err != nil {
			var refused *acquireRefused
			if errors.As(err, &refused) {
				return n.redoCopy(ctx, rec, refused)
			}
			return fmt.Errorf("copy: %w", err)
		}
		next.Split.Phase = logpb.SplitPhase_SPLIT_PHASE_ACQUIRED
		return n.putGroups(ctx, []*logpb.GroupRecord{next}, []uint64{rec.ConfVer})
	case logpb.SplitPhase_SPLIT_PHASE_ACQUIRED:
		next.Ranges = nil
		for _, h := range rec.Ranges {
			if h.Lo <= sp.Range.Lo && sp.Range.Hi <= h.Hi {
				if h.Lo < sp.Range.Lo {
					next.Ranges = append(next.Ranges, &logpb.HashRange{Lo: h.Lo, Hi: sp.Range.Lo, Version: sp.Range.Version})
				}
				if sp.Range.Hi < h.Hi {
					next.Ranges = append(next.Ranges, &logpb.HashRange{Lo: sp.Range.Hi, Hi: h.Hi, Version: sp.Range.Version})
				}
				continue
			}
			next.Ranges = append(next.Ranges, h)
		}
		next.Split.Phase = logpb.SplitPhase_SPLIT_PHASE_PUBLISHED
		c := proto.CloneOf(child)
		c.Ranges = []*logpb.HashRange{proto.CloneOf(sp.Range)}
		c.State, c.BaseRevision = logpb.GroupState_GROUP_STATE_ACTIVE, sp.FenceRevision
		return n.putGroups(ctx, []*logpb.GroupRecord{next, c}, []uint64{rec.ConfVer, child.ConfVer})
	case logpb.SplitPhase_SPLIT_PHASE_PUBLISHED:
		// Before the drop, a scan of the parent's frozen range verifies
		// the digest the acquire compared (recorded by the release, not
		// scanned in the pause): a change the tracking missed, which the
		// child's copy may lack, stops the split here, the parent's copy
		// kept for an operator.
		v, err := n.readChunk(ctx, &logpb.SplitRead{Group: rec.Name, Range: sp.Range, Verify: true})
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if v.Mismatch != "" {
			next.Split.Stuck = "the digest at the fence failed its verification (the parent's copy is kept): " + v.Mismatch
			n.log.Error("split stuck: the parent's range differs from the digest its child acquired with", "group", rec.Name, "child", sp.Child, "err", v.Mismatch)
			return n.putGroups(ctx, []*logpb.GroupRecord{next}, []uint64{rec.ConfVer})
		}
		// The parent deletes its copy in bounded steps, each from where
		// the last one stopped (a cursor in its state).
		dropped, steps, err := n.proposeInSteps(ctx, rec.Name, "drop",
			&logpb.Op{Op: &logpb.Op_RangeDrop{RangeDrop: &logpb.RangeDrop{Range: sp.Range, Limit: splitDropKeys}}})
		if err != nil {
			return err
		}
		next.Split = nil
		if err := n.putGroups(ctx, []*logpb.GroupRecord{next}, []uint64{rec.ConfVer}); err != nil {
			return err
		}
		n.log.Info("split done", "group", rec.Name, "child", sp.Child, "dropped", dropped, "drop_steps", steps)
		return nil
	}
	return fmt.Errorf("split of %s: unknown phase %v", rec.Name, sp.Phase)
}

// proposeInSteps proposes op to group until an answer says it is done
// (Succeeded): a deletion in bounded steps (RangeDrop, RangeReset), each
// going on from where its group's log says the last one stopped. It
// returns the keys deleted and the steps taken.
func (n *Node) proposeInSteps(ctx context.Context, group, what string, op *logpb.Op) (count uint64, steps int, err error) {
	for {
		res, err := n.Propose(ctx, group, op)
		if err != nil {
			return count, steps, fmt.Errorf("%s: %w", what, err)
		}
		if res.Code != logpb.Code_CODE_OK {
			return count, steps, fmt.Errorf("%s refused: %s", what, res.Message)
		}
		count, steps = count+res.Count, steps+1
		if res.Succeeded {
			return count, steps, nil
		}
	}
}

// proposeMoving proposes a RangeTrack or RangeRelease to the parent and
// returns the MovingRange its log recorded.
func (n *Node) proposeMoving(ctx context.Context, parent string, op *logpb.Op) (*logpb.MovingRange, error) {
	res, err := n.Propose(ctx, parent, op)
	if err != nil {
		return nil, err
	}
	if res.Code != logpb.Code_CODE_OK {
		return nil, fmt.Errorf("refused: %s", res.Message)
	}
	mr := &logpb.MovingRange{}
	return mr, proto.Unmarshal(res.Value, mr)
}

// ingest proposes a chunk of the copy (or of its replay) to the child and
// returns its answer and the copy's state after it.
func (n *Node) ingest(ctx context.Context, sp *logpb.Split, op *logpb.RangeIngest) (*logpb.Result, *logpb.RangeCopyState, error) {
	res, err := n.Propose(ctx, sp.Child, &logpb.Op{Op: &logpb.Op_RangeIngest{RangeIngest: op}})
	if err != nil {
		return nil, nil, fmt.Errorf("ingest: %w", err)
	}
	if res.Code != logpb.Code_CODE_OK && res.Code != logpb.Code_CODE_CONFLICT {
		return nil, nil, fmt.Errorf("ingest refused: %s", res.Message)
	}
	st := &logpb.RangeCopyState{}
	return res, st, proto.Unmarshal(res.Value, st)
}

// copyBulk copies the range into the child, chunk by chunk from the
// child's cursor, each chunk read from the parent's leader (at or past
// its tracking or its fence), until the child's bulk copy is done; it
// returns the copy's state then (acquired: the child owns the range
// already).
func (n *Node) copyBulk(ctx context.Context, parent string, sp *logpb.Split) (*logpb.RangeCopyState, error) {
	// Where the child is: an empty first chunk applies only if it has
	// copied nothing (and changes nothing then); else it answers the
	// cursor.
	_, st, err := n.ingest(ctx, sp, &logpb.RangeIngest{Range: sp.Range, From: parent})
	if err != nil {
		return nil, err
	}
	for !st.Done && !st.Acquired {
		if st.Resetting {
			// A reset of the copy (after a refused acquire) that a
			// controller left unfinished: finish it first.
			return nil, &acquireRefused{resets: st.Resets, msg: "a reset of the copy was under way"}
		}
		after := st.Cursor
		chunk, err := n.readChunk(ctx, &logpb.SplitRead{Group: parent, Range: sp.Range, After: after, Limit: splitChunkKeys})
		if err != nil {
			return nil, err
		}
		if hook := splitCopyHook.Load(); hook != nil {
			(*hook)(sp.Child, chunk.Pairs)
		}
		if _, st, err = n.ingest(ctx, sp, &logpb.RangeIngest{Range: sp.Range, From: parent, After: after, Pairs: chunk.Pairs, Done: chunk.Done}); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// catchUp runs catch-up passes into the child (the bulk copy done),
// each copying the keys the parent marked as changed since the last pass
// caught up, from views of the parent while it serves the range, until a
// pass copies few keys.
func (n *Node) catchUp(ctx context.Context, parent string, sp *logpb.Split) error {
	st, err := n.copyBulk(ctx, parent, sp)
	if err != nil || st.Acquired || st.Final {
		return err
	}
	for range splitCatchUpPasses {
		since, copied := st.CaughtUp, 0
		for {
			after := st.PassCursor
			chunk, err := n.readChunk(ctx, &logpb.SplitRead{Group: parent, Range: sp.Range, After: after, Limit: splitChunkKeys, Replay: true, Since: since})
			if err != nil {
				return err
			}
			res, next, err := n.ingest(ctx, sp, &logpb.RangeIngest{Range: sp.Range, From: parent, After: after, Pairs: chunk.Pairs,
				Done: chunk.Done, Replay: true, Since: since, ViewIndex: chunk.ViewIndex})
			if err != nil {
				return err
			}
			if next.Acquired || next.Final {
				return nil // the fence came meanwhile (another controller)
			}
			st = next
			if res.Code == logpb.Code_CODE_CONFLICT {
				if st.CaughtUp != since {
					break // the pass was ended (another controller)
				}
				continue // resume at the pass's cursor
			}
			copied += len(chunk.Pairs)
			if chunk.Done {
				break
			}
		}
		if copied <= splitCatchUpKeys {
			break
		}
	}
	return nil
}

// copyRange makes the child acquire the released range: it completes the
// bulk copy if the fence came before its end (a split released without
// tracking is copied whole here), replays the keys the parent marked as
// changed above the child's caught-up index, as they are at the fence,
// then proposes the acquire with the parent's key count and hash at the
// fence. A child that acquired before answers at once.
func (n *Node) copyRange(ctx context.Context, parent string, sp *logpb.Split) error {
	st, err := n.copyBulk(ctx, parent, sp)
	if err != nil {
		return err
	}
	if st.Acquired {
		return nil
	}
	// The parent's digest at the fence (recorded by its release; a scan
	// of its state when the release carried no base) is read while the
	// replay goes on.
	type digest struct {
		c   *logpb.SplitChunk
		err error
	}
	digested := make(chan digest, 1)
	go func() {
		c, err := n.readChunk(ctx, &logpb.SplitRead{Group: parent, Range: sp.Range, Limit: 1, Digest: true})
		digested <- digest{c, err}
	}()
	replayed := 0
	var after []byte
	for {
		chunk, err := n.readChunk(ctx, &logpb.SplitRead{Group: parent, Range: sp.Range, After: after, Limit: splitChunkKeys,
			Replay: true, Final: true, Since: st.CaughtUp})
		if err != nil {
			return err
		}
		if len(chunk.Pairs) > 0 {
			res, st, err := n.ingest(ctx, sp, &logpb.RangeIngest{Range: sp.Range, From: parent, Pairs: chunk.Pairs, Replay: true, Final: true, Since: st.CaughtUp})
			if err != nil {
				return err
			}
			if st.Acquired {
				return nil
			}
			if res.Code != logpb.Code_CODE_OK {
				return fmt.Errorf("replay refused: %s", res.Message)
			}
			replayed += len(chunk.Pairs)
		}
		if chunk.Done {
			break
		}
		after = chunk.Pairs[len(chunk.Pairs)-1].Key
	}
	dg := <-digested
	if dg.err != nil {
		return dg.err
	}
	d := dg.c
	res, err := n.Propose(ctx, sp.Child, &logpb.Op{Op: &logpb.Op_RangeAcquire{RangeAcquire: &logpb.RangeAcquire{Range: sp.Range, From: parent,
		FenceRevision: sp.FenceRevision, Keys: d.Keys, Hash: d.Hash}}})
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	if res.Code == logpb.Code_CODE_CONFLICT && len(res.Value) > 0 {
		cs := &logpb.RangeCopyState{}
		if err := proto.Unmarshal(res.Value, cs); err != nil {
			return err
		}
		return &acquireRefused{resets: cs.Resets, msg: res.Message}
	}
	if res.Code != logpb.Code_CODE_OK {
		return fmt.Errorf("acquire refused (not published): %s", res.Message)
	}
	n.log.Info("split acquired", "group", parent, "child", sp.Child, "keys", d.Keys, "replayed", replayed, "caught_up", st.CaughtUp)
	return nil
}

// acquireRefused: the child's log refused the acquire, its copy differing
// from the parent's range at the fence, after resets resets of the copy.
type acquireRefused struct {
	resets uint32
	msg    string
}

func (e *acquireRefused) Error() string {
	return "acquire refused (the copy differs from the parent's range: not published): " + e.msg
}

// redoCopy answers a refused acquire: the child's copy is cleared and the
// next step copies the frozen range again, unless it was redone
// splitMaxResets times already: the split then gives up (stuck).
func (n *Node) redoCopy(ctx context.Context, rec *logpb.GroupRecord, refused *acquireRefused) error {
	sp := rec.Split
	if refused.resets >= splitMaxResets {
		next := proto.CloneOf(rec)
		next.Split.Stuck = fmt.Sprintf("%s refused its range after %d copies: %s", sp.Child, refused.resets+1, refused.msg)
		n.log.Error("split stuck: the moving range stays fenced (its writes refused) until an operator acts", "group", rec.Name, "child", sp.Child, "copies", refused.resets+1, "err", refused.msg)
		return n.putGroups(ctx, []*logpb.GroupRecord{next}, []uint64{rec.ConfVer})
	}
	n.log.Error("split acquire refused: copying the range again", "group", rec.Name, "child", sp.Child, "reset", refused.resets+1, "of", splitMaxResets, "err", refused.msg)
	deleted, steps, err := n.proposeInSteps(ctx, sp.Child, "reset", &logpb.Op{Op: &logpb.Op_RangeReset{RangeReset: &logpb.RangeReset{
		Range: sp.Range, From: rec.Name, ExpectResets: refused.resets, Limit: splitDropKeys}}})
	if err != nil {
		return err
	}
	n.log.Info("split copy reset", "group", rec.Name, "child", sp.Child, "deleted", deleted, "steps", steps)
	return nil
}

// readChunk reads a chunk of the range on the parent's leader.
func (n *Node) readChunk(ctx context.Context, req *logpb.SplitRead) (*logpb.SplitChunk, error) {
	payload, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	out, err := n.CallLeader(ctx, req.Group, callSplitRead, payload)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", req.Group, err)
	}
	c := &logpb.SplitChunk{}
	return c, proto.Unmarshal(out, c)
}

// serveSplitRead answers a chunk of a split's range from this node's
// replica, once it has applied everything committed (so the tracking or
// the release the controller saw applied).
func (n *Node) serveSplitRead(ctx context.Context, req *logpb.SplitRead) ([]byte, error) {
	if _, err := n.Read(ctx, req.Group, false); err != nil {
		return nil, err
	}
	m, err := n.Machine(req.Group)
	if err != nil {
		return nil, err
	}
	out := &logpb.SplitChunk{}
	switch {
	case req.Base:
		var d sm.RangeDigest
		d, out.HasDigest, err = m.RangeBase(req.Range)
		out.Keys, out.Hash = d.Keys, d.Hash
	case req.Verify:
		out.Checked, out.Mismatch, err = m.VerifyFence(req.Range)
	default:
		var c *sm.RangeChunk
		if req.Replay {
			c, err = m.ReadReplay(req.Range, req.After, req.Since, int(max(req.Limit, 1)), splitChunkBytes, req.Final)
		} else {
			c, err = m.ReadRange(req.Range, req.After, int(max(req.Limit, 1)), splitChunkBytes, req.Digest)
		}
		if err == nil {
			out.Pairs, out.Done, out.ViewIndex = c.Pairs, c.Done, c.AppliedIndex
			if c.Digest != nil {
				out.HasDigest, out.Keys, out.Hash = true, c.Digest.Keys, c.Digest.Hash
			}
		}
	}
	if errors.Is(err, sm.ErrNotReleased) {
		return nil, fmt.Errorf("%w: %v", ErrNoLeader, err)
	}
	if err != nil {
		return nil, err
	}
	return proto.Marshal(out)
}

// bootstrapChild gives a group made by a split, still being created, its
// first configuration: the replicas its record was created with, all
// voters. Every replica bootstraps the same configuration; one that has
// started before (or a replica added later by a move) does not.
func (n *Node) bootstrapChild(g *group, d *state.Directory, rec *logpb.GroupRecord) error {
	if rec.Parent == "" || rec.State != logpb.GroupState_GROUP_STATE_CREATING {
		return nil
	}
	var conf raft.Configuration
	for _, r := range rec.Replicas {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(r.Node), Address: raft.ServerAddress(memberAddr(d, r.Node))})
	}
	if err := g.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("metanode: bootstrap %s: %w", g.name, err)
	}
	return nil
}
