package sm

import (
	"bytes"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rocks"
	"github.com/metamq/meta/sm/logpb"
)

// applier applies the ops of one entry into the shared write batch. Every op
// is atomic: it checks everything first and writes after, and a savepoint
// undoes a partial write if an op fails midway. Reads go through the batch,
// so an op sees the writes of the ops before it in the same raft batch.
//
// Revisions: an op that changes state gets the group's next revision
// (bump, once per op); every change it makes to a watched space is logged
// as an event under that revision, numbered from 0.
type applier struct {
	m   *Machine
	b   *rocks.Batch
	st  *logpb.AppliedState
	now int64

	bumped bool   // the current op has its revision
	seq    uint32 // next event number within the current op

	// own is the ownership ops are checked against (the batch's latest);
	// ownChanged is set by an op that changed it.
	own        *ownView
	ownChanged *logpb.Ownership
	// hashCheck is set by a HashCheck op: the entry's state is to be
	// digested once it has committed.
	hashCheck bool
	// dropped is set by the RangeDrop step that removed a released
	// range: the group is to be compacted once it has committed.
	dropped bool
	// err is set when an op hit a storage failure: the batch holding the
	// entry must not be committed (ApplyBatch halts the group).
	err error
}

func invalid(format string, args ...any) *logpb.Result {
	return &logpb.Result{Code: logpb.Code_CODE_INVALID, Message: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) *logpb.Result {
	return &logpb.Result{Code: logpb.Code_CODE_NOT_FOUND, Message: fmt.Sprintf(format, args...)}
}

func (a *applier) apply(op *logpb.Op) *logpb.Result {
	if !a.m.kind.Allows(op) {
		return invalid("operation %T not allowed in a %s group", op.Op, a.m.kind)
	}
	op, ver, refused := a.checkOp(op)
	if refused != nil {
		refused.Revision = a.st.Revision
		return refused
	}
	a.b.SetSavePoint()
	rev, own, ownChanged := a.st.Revision, a.own, a.ownChanged
	a.bumped, a.seq = false, 0
	r, err := a.dispatch(op)
	if err != nil {
		// A read through the batch failed, or a stored record does not
		// decode: the entry cannot be applied here (ApplyBatch halts).
		a.err = fmt.Errorf("%w: apply op: %w", ErrStorage, err)
		return &logpb.Result{}
	}
	// The ownership the op was checked against, before it ran.
	r.RangeVersion = ver
	if r.Code != logpb.Code_CODE_OK {
		// A failing op leaves nothing behind (most check before they
		// write; a split's first ingest records the ownership first).
		if err := a.b.RollbackToSavePoint(); err != nil {
			a.err = fmt.Errorf("%w: rollback op: %w", ErrStorage, err)
			return &logpb.Result{}
		}
		// The ownership too, in memory as in the batch.
		a.st.Revision, a.own, a.ownChanged = rev, own, ownChanged
	} else if a.own.tracks() {
		if err := a.markTracked(); err != nil {
			a.err = fmt.Errorf("%w: mark a tracked change: %w", ErrStorage, err)
			return &logpb.Result{}
		}
	}
	r.Revision = a.st.Revision
	return r
}

// bump gives the current op the group's next revision.
func (a *applier) bump() uint64 {
	if !a.bumped {
		a.st.Revision++
		a.bumped = true
		a.seq = 0
	}
	return a.st.Revision
}

// emit logs a change of a watched space under the current op's revision.
func (a *applier) emit(space logpb.Space, key, value, prev []byte, deleted bool) error {
	rev := a.bump()
	ev := &logpb.Event{Space: space, Deleted: deleted, Key: key, Value: value, Prev: prev, AtUnixNano: a.now}
	err := a.write(eventKey(rev, a.seq), ev)
	a.seq++
	return err
}

func (a *applier) dispatch(op *logpb.Op) (*logpb.Result, error) {
	switch o := op.Op.(type) {
	case *logpb.Op_Put:
		return a.put(o.Put.Key, o.Put.Value, o.Put.Lease)
	case *logpb.Op_Delete:
		return a.del(o.Delete.Key)
	case *logpb.Op_Cas:
		return a.cas(o.Cas)
	case *logpb.Op_KvPuts:
		return a.kvPuts(o.KvPuts)
	case *logpb.Op_KvTxn:
		return a.kvTxn(o.KvTxn)
	case *logpb.Op_OffsetCommit:
		return a.offsetCommit(o.OffsetCommit)
	case *logpb.Op_OffsetDeleteGroup:
		return a.offsetDeleteGroup(o.OffsetDeleteGroup.Group)
	case *logpb.Op_ClusterInit:
		return a.clusterInit(o.ClusterInit)
	case *logpb.Op_MemberPut:
		return a.memberPut(o.MemberPut)
	case *logpb.Op_MemberRemove:
		return a.memberRemove(o.MemberRemove.Id)
	case *logpb.Op_MemberSetState:
		return a.memberSetState(o.MemberSetState)
	case *logpb.Op_GroupPut:
		return a.groupPut(o.GroupPut)
	case *logpb.Op_DirectoryInit:
		return a.directoryInit(o.DirectoryInit)
	case *logpb.Op_OwnershipInit:
		return a.ownershipInit(o.OwnershipInit)
	case *logpb.Op_GroupsPut:
		return a.groupsPut(o.GroupsPut)
	case *logpb.Op_RangeRelease:
		return a.rangeRelease(o.RangeRelease)
	case *logpb.Op_RangeIngest:
		return a.rangeIngest(o.RangeIngest)
	case *logpb.Op_RangeAcquire:
		return a.rangeAcquire(o.RangeAcquire)
	case *logpb.Op_RangeDrop:
		return a.rangeDrop(o.RangeDrop)
	case *logpb.Op_RangeTrack:
		return a.rangeTrack(o.RangeTrack)
	case *logpb.Op_RangeAbort:
		return a.rangeAbort(o.RangeAbort)
	case *logpb.Op_RangeReset:
		return a.rangeReset(o.RangeReset)
	case *logpb.Op_ClusterVersionSet:
		return a.clusterVersionSet(o.ClusterVersionSet)
	case *logpb.Op_AlarmSet:
		return a.alarmSet(o.AlarmSet)
	case *logpb.Op_HashCheck:
		a.hashCheck = true
		return &logpb.Result{}, nil
	case *logpb.Op_ResourceCreate:
		return a.resourceCreate(o.ResourceCreate)
	case *logpb.Op_ResourceUpdate:
		return a.resourceUpdate(o.ResourceUpdate)
	case *logpb.Op_ResourceDelete:
		return a.resourceDelete(o.ResourceDelete)
	case *logpb.Op_SessionsPut:
		return a.sessionsPut(o.SessionsPut)
	case *logpb.Op_SessionsDelete:
		return a.sessionsDelete(o.SessionsDelete)
	case *logpb.Op_SessionsExpire:
		return a.sessionsExpire(o.SessionsExpire)
	case *logpb.Op_WillPut:
		return a.willPut(o.WillPut)
	case *logpb.Op_WillDelete:
		return a.willDelete(o.WillDelete.ClientId)
	case *logpb.Op_WillsMarkDue:
		return a.willsMarkDue(o.WillsMarkDue)
	case *logpb.Op_WillClaim:
		return a.willClaim(o.WillClaim)
	case *logpb.Op_WillComplete:
		return a.willComplete(o.WillComplete)
	case *logpb.Op_RetainedSet:
		return a.retainedSet(o.RetainedSet)
	case *logpb.Op_LeaseGrant:
		return a.leaseGrant(o.LeaseGrant)
	case *logpb.Op_LeaseKeepAlive:
		return a.leaseKeepAlive(o.LeaseKeepAlive.Id)
	case *logpb.Op_LeaseRevoke:
		return a.leaseRevoke(o.LeaseRevoke.Id)
	case *logpb.Op_LeasesExpire:
		return a.leasesExpire(o.LeasesExpire)
	case *logpb.Op_EventsCompact:
		return a.eventsCompact(o.EventsCompact.BelowRevision)
	case *logpb.Op_BrokerRegister:
		return a.brokerRegister(o.BrokerRegister)
	case *logpb.Op_BrokerSetStatus:
		return a.brokerSetStatus(o.BrokerSetStatus)
	case *logpb.Op_Assign:
		return a.assign(o.Assign)
	case *logpb.Op_ConnectorReport:
		return a.connectorReport(o.ConnectorReport)
	}
	return invalid("empty operation"), nil
}

// get reads a stored message through the batch; found is false when the
// key is absent. raw is the stored encoding.
func (a *applier) get(key []byte, msg proto.Message) (raw []byte, found bool, err error) {
	v, ok, err := a.b.Get(a.m.space, key)
	if err != nil || !ok {
		return nil, false, err
	}
	if err := proto.Unmarshal(v, msg); err != nil {
		return nil, false, fmt.Errorf("decode stored %T: %w", msg, err)
	}
	return v, true, nil
}

// getStored reads the message stored under key into msg and returns it
// with its stored encoding; nil (and no encoding) when the key is absent.
func getStored[M proto.Message](a *applier, key []byte, msg M) (M, []byte, error) {
	raw, ok, err := a.get(key, msg)
	if err != nil || !ok {
		var none M
		return none, nil, err
	}
	return msg, raw, nil
}

func (a *applier) getKV(key []byte) (*logpb.KV, []byte, error) {
	return getStored(a, kvKey(key), &logpb.KV{})
}

// write stores msg and returns its encoding.
func (a *applier) write(key []byte, msg proto.Message) error {
	_, err := a.writeRaw(key, msg)
	return err
}

func (a *applier) writeRaw(key []byte, msg proto.Message) ([]byte, error) {
	v, err := marshal.Marshal(msg)
	if err != nil {
		return nil, err
	}
	a.b.Put(a.m.space, key, v)
	return v, nil
}

// writeEmit stores msg under key and logs the change of watchKey in space
// (prevRaw the encoding it replaces); it returns the new encoding.
func (a *applier) writeEmit(space logpb.Space, key, watchKey []byte, msg proto.Message, prevRaw []byte) ([]byte, error) {
	raw, err := a.writeRaw(key, msg)
	if err != nil {
		return nil, err
	}
	if err := a.emit(space, watchKey, raw, prevRaw, false); err != nil {
		return nil, err
	}
	return raw, nil
}

// storeResult is writeEmit's result for ops that answer with the stored
// value and the one it replaced.
func (a *applier) storeResult(space logpb.Space, key, watchKey []byte, msg proto.Message, prevRaw []byte) (*logpb.Result, error) {
	raw, err := a.writeEmit(space, key, watchKey, msg, prevRaw)
	if err != nil {
		return nil, err
	}
	return &logpb.Result{Value: raw, PrevValue: prevRaw}, nil
}

func (a *applier) mark(key []byte)   { a.b.Put(a.m.space, key, nil) }
func (a *applier) unmark(key []byte) { a.b.Delete(a.m.space, key) }

func (a *applier) put(key, value []byte, lease int64) (*logpb.Result, error) {
	if len(key) == 0 {
		return invalid("empty key"), nil
	}
	prev, _, refused, err := a.putKV(key, value, lease)
	if refused != nil || err != nil {
		return refused, err
	}
	return &logpb.Result{Prev: prev}, nil
}

// putKV stores key=value attached to lease (0: none) under the current
// op's revision and returns what it replaced (nil when the key was
// absent) with its stored encoding; refused is NOT_FOUND, with nothing
// written, when the lease does not exist.
func (a *applier) putKV(key, value []byte, lease int64) (prev *logpb.KV, prevRaw []byte, refused *logpb.Result, err error) {
	prev, prevRaw, err = a.getKV(key)
	if err != nil {
		return nil, nil, nil, err
	}
	if lease != 0 {
		ok, err := a.leaseExists(lease)
		if err != nil {
			return nil, nil, nil, err
		}
		if !ok {
			return nil, nil, notFound("lease %d not found", lease), nil
		}
	}
	rev := a.bump()
	kv := &logpb.KV{Value: value, CreateRevision: rev, ModRevision: rev, Version: 1, Lease: lease}
	if prev != nil {
		kv.CreateRevision = prev.CreateRevision
		kv.Version = prev.Version + 1
		if prev.Lease != 0 && prev.Lease != lease {
			a.unmark(leaseKeysKey(prev.Lease, key))
		}
	}
	if lease != 0 {
		a.mark(leaseKeysKey(lease, key))
	}
	if _, err := a.writeEmit(logpb.Space_SPACE_KV, kvKey(key), key, kv, prevRaw); err != nil {
		return nil, nil, nil, err
	}
	return prev, prevRaw, nil, nil
}

func (a *applier) del(key []byte) (*logpb.Result, error) {
	prev, prevRaw, err := a.getKV(key)
	if err != nil {
		return nil, err
	}
	if prev == nil {
		return &logpb.Result{Code: logpb.Code_CODE_NOT_FOUND}, nil
	}
	if err := a.deleteKV(key, prev, prevRaw); err != nil {
		return nil, err
	}
	return &logpb.Result{Prev: prev, Count: 1}, nil
}

// deleteKV removes a stored key, its lease attachment, and logs it.
func (a *applier) deleteKV(key []byte, prev *logpb.KV, prevRaw []byte) error {
	a.bump()
	a.b.Delete(a.m.space, kvKey(key))
	if prev.Lease != 0 {
		a.unmark(leaseKeysKey(prev.Lease, key))
	}
	return a.emit(logpb.Space_SPACE_KV, key, nil, prevRaw, true)
}

func (a *applier) cas(c *logpb.KVCompareAndSwap) (*logpb.Result, error) {
	if len(c.Key) == 0 {
		return invalid("empty key"), nil
	}
	cur, _, err := a.getKV(c.Key)
	if err != nil {
		return nil, err
	}
	match := false
	switch {
	case c.ExpectAbsent:
		match = cur == nil
	case cur != nil:
		match = bytes.Equal(cur.Value, c.ExpectedValue) &&
			(c.ExpectedModRevision == 0 || cur.ModRevision == c.ExpectedModRevision)
	}
	if !match {
		return &logpb.Result{Code: logpb.Code_CODE_COMPARE_FAILED, Prev: cur}, nil
	}
	return a.put(c.Key, c.NewValue, c.Lease)
}

func (a *applier) offsetCommit(c *logpb.OffsetCommit) (*logpb.Result, error) {
	for i, e := range c.Entries {
		if e.Group == "" || e.Topic == "" || e.Partition < 0 || e.Offset < 0 {
			return invalid("entry %d: group, topic must be set, partition and offset >= 0", i), nil
		}
	}
	if len(c.Entries) == 0 {
		return invalid("no entries"), nil
	}
	rev := a.bump()
	for _, e := range c.Entries {
		o := &logpb.Offset{Offset: e.Offset, Metadata: e.Metadata, ModRevision: rev}
		if err := a.write(offsetKey(e.Group, e.Topic, e.Partition), o); err != nil {
			return nil, err
		}
	}
	return &logpb.Result{Count: uint64(len(c.Entries))}, nil
}

// scanKeys returns the keys in [start, end) as seen through the batch.
func (a *applier) scanKeys(start, end []byte, limit int) ([][]byte, error) {
	var keys [][]byte
	err := a.b.Scan(a.m.space, start, end, func(k, _ []byte) bool {
		keys = append(keys, append([]byte(nil), k...))
		return limit <= 0 || len(keys) < limit
	})
	return keys, err
}

func (a *applier) offsetDeleteGroup(group string) (*logpb.Result, error) {
	if group == "" {
		return invalid("empty group"), nil
	}
	return a.deletePrefix(offsetGroupPrefix(group))
}

// deletePrefix deletes every key under p (NOT_FOUND when there is none)
// and answers how many.
func (a *applier) deletePrefix(p []byte) (*logpb.Result, error) {
	return a.deleteRange(p, prefixEnd(p))
}

// deleteRange deletes every key in [start, end) (NOT_FOUND when there is
// none) and answers how many.
func (a *applier) deleteRange(start, end []byte) (*logpb.Result, error) {
	keys, err := a.scanKeys(start, end, 0)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return &logpb.Result{Code: logpb.Code_CODE_NOT_FOUND}, nil
	}
	a.bump()
	for _, k := range keys {
		a.b.Delete(a.m.space, k)
	}
	return &logpb.Result{Count: uint64(len(keys))}, nil
}

func (a *applier) clusterInit(c *logpb.ClusterInit) (*logpb.Result, error) {
	if c.ClusterId == "" || c.DataGroups == 0 || c.OffsetGroups == 0 {
		return invalid("cluster id and group counts must be set"), nil
	}
	cur := &logpb.ClusterInit{}
	_, ok, err := a.get(keyClusterID, cur)
	if err != nil {
		return nil, err
	}
	if ok {
		if cur.ClusterId == c.ClusterId && cur.OffsetGroups == c.OffsetGroups && cur.DataGroups == c.DataGroups {
			return &logpb.Result{}, nil
		}
		return &logpb.Result{Code: logpb.Code_CODE_CONFLICT, Message: fmt.Sprintf(
			"cluster %s was created with %d offset and %d data groups; this node has cluster %s with %d and %d",
			cur.ClusterId, cur.OffsetGroups, cur.DataGroups, c.ClusterId, c.OffsetGroups, c.DataGroups)}, nil
	}
	for _, mp := range c.Members {
		if mp.Id == "" || mp.Addr == "" {
			return invalid("member id and addr must be set"), nil
		}
	}
	for _, g := range c.Groups {
		if r := checkGroup(g); r != nil {
			return r, nil
		}
	}
	a.bump()
	for _, mp := range c.Members {
		if err := a.write(memberKey(mp.Id), mp); err != nil {
			return nil, err
		}
	}
	for _, g := range c.Groups {
		g = proto.CloneOf(g)
		g.ConfVer = 1
		if err := a.write(groupKey(g.Name), g); err != nil {
			return nil, err
		}
	}
	rec := &logpb.ClusterInit{ClusterId: c.ClusterId, OffsetGroups: c.OffsetGroups, DataGroups: c.DataGroups,
		ReplicationFactor: c.ReplicationFactor, MetadataReplicationFactor: c.MetadataReplicationFactor}
	if err := a.write(keyClusterID, rec); err != nil {
		return nil, err
	}
	return &logpb.Result{}, a.bumpDirectory()
}

func (a *applier) memberPut(mp *logpb.MemberPut) (*logpb.Result, error) {
	if mp.Id == "" || mp.Addr == "" {
		return invalid("member id and addr must be set"), nil
	}
	cur := &logpb.MemberPut{}
	if _, ok, err := a.get(memberKey(mp.Id), cur); err != nil {
		return nil, err
	} else if ok {
		mp = proto.CloneOf(mp)
		mp.State = cur.State // a put never changes the state (MemberSetState does)
	}
	a.bump()
	if err := a.write(memberKey(mp.Id), mp); err != nil {
		return nil, err
	}
	return &logpb.Result{}, a.bumpDirectory()
}

func (a *applier) memberRemove(id string) (*logpb.Result, error) {
	_, ok, err := a.b.Get(a.m.space, memberKey(id))
	if err != nil {
		return nil, err
	}
	if !ok {
		return &logpb.Result{Code: logpb.Code_CODE_NOT_FOUND}, nil
	}
	a.bump()
	a.b.Delete(a.m.space, memberKey(id))
	return &logpb.Result{Count: 1}, a.bumpDirectory()
}
