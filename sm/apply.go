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
type applier struct {
	m   *Machine
	b   *rocks.Batch
	st  *logpb.AppliedState
	now int64
}

func invalid(format string, args ...any) *logpb.Result {
	return &logpb.Result{Code: logpb.Code_CODE_INVALID, Message: fmt.Sprintf(format, args...)}
}

func (a *applier) apply(op *logpb.Op) *logpb.Result {
	if !a.m.kind.Allows(op) {
		return invalid("operation %T not allowed in a %s group", op.Op, a.m.kind)
	}
	a.b.SetSavePoint()
	rev := a.st.Revision
	r, err := a.dispatch(op)
	if err != nil {
		a.m.fatal("apply op", err)
	}
	if r.Code != logpb.Code_CODE_OK {
		// Ops check before they write, so this undoes nothing today; it
		// keeps a failing op atomic should one ever fail after writing.
		if err := a.b.RollbackToSavePoint(); err != nil {
			a.m.fatal("rollback op", err)
		}
		a.st.Revision = rev
	}
	r.Revision = a.st.Revision
	return r
}

func (a *applier) dispatch(op *logpb.Op) (*logpb.Result, error) {
	switch o := op.Op.(type) {
	case *logpb.Op_Put:
		return a.put(o.Put.Key, o.Put.Value, o.Put.Lease)
	case *logpb.Op_Delete:
		return a.del(o.Delete.Key)
	case *logpb.Op_Cas:
		return a.cas(o.Cas)
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
	}
	return invalid("empty operation"), nil
}

func (a *applier) getKV(key []byte) (*logpb.KV, error) {
	v, ok, err := a.b.Get(a.m.space, kvKey(key))
	if err != nil || !ok {
		return nil, err
	}
	kv := &logpb.KV{}
	if err := proto.Unmarshal(v, kv); err != nil {
		return nil, fmt.Errorf("decode stored kv: %w", err)
	}
	return kv, nil
}

func (a *applier) write(key []byte, msg proto.Message) error {
	return putProto(a.b, a.m.space, key, msg)
}

func (a *applier) put(key, value []byte, lease int64) (*logpb.Result, error) {
	if len(key) == 0 {
		return invalid("empty key"), nil
	}
	prev, err := a.getKV(key)
	if err != nil {
		return nil, err
	}
	a.st.Revision++
	kv := &logpb.KV{Value: value, CreateRevision: a.st.Revision, ModRevision: a.st.Revision, Version: 1, Lease: lease}
	if prev != nil {
		kv.CreateRevision = prev.CreateRevision
		kv.Version = prev.Version + 1
	}
	if err := a.write(kvKey(key), kv); err != nil {
		return nil, err
	}
	return &logpb.Result{Prev: prev}, nil
}

func (a *applier) del(key []byte) (*logpb.Result, error) {
	prev, err := a.getKV(key)
	if err != nil {
		return nil, err
	}
	if prev == nil {
		return &logpb.Result{Code: logpb.Code_CODE_NOT_FOUND}, nil
	}
	a.st.Revision++
	a.b.Delete(a.m.space, kvKey(key))
	return &logpb.Result{Prev: prev, Count: 1}, nil
}

func (a *applier) cas(c *logpb.KVCompareAndSwap) (*logpb.Result, error) {
	if len(c.Key) == 0 {
		return invalid("empty key"), nil
	}
	cur, err := a.getKV(c.Key)
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
	a.st.Revision++
	for _, e := range c.Entries {
		o := &logpb.Offset{Offset: e.Offset, Metadata: e.Metadata, ModRevision: a.st.Revision}
		if err := a.write(offsetKey(e.Group, e.Topic, e.Partition), o); err != nil {
			return nil, err
		}
	}
	return &logpb.Result{Count: uint64(len(c.Entries))}, nil
}

func (a *applier) offsetDeleteGroup(group string) (*logpb.Result, error) {
	if group == "" {
		return invalid("empty group"), nil
	}
	p := offsetGroupPrefix(group)
	var keys [][]byte
	err := a.b.Scan(a.m.space, p, prefixEnd(p), func(k, _ []byte) bool {
		keys = append(keys, append([]byte(nil), k...))
		return true
	})
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return &logpb.Result{Code: logpb.Code_CODE_NOT_FOUND}, nil
	}
	a.st.Revision++
	for _, k := range keys {
		a.b.Delete(a.m.space, k)
	}
	return &logpb.Result{Count: uint64(len(keys))}, nil
}

func (a *applier) clusterInit(c *logpb.ClusterInit) (*logpb.Result, error) {
	if c.ClusterId == "" || c.DataGroups == 0 || c.OffsetGroups == 0 {
		return invalid("cluster id and group counts must be set"), nil
	}
	v, ok, err := a.b.Get(a.m.space, keyClusterID)
	if err != nil {
		return nil, err
	}
	if ok {
		cur := &logpb.ClusterInit{}
		if err := proto.Unmarshal(v, cur); err != nil {
			return nil, err
		}
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
	a.st.Revision++
	for _, mp := range c.Members {
		if err := a.write(memberKey(mp.Id), mp); err != nil {
			return nil, err
		}
	}
	rec := &logpb.ClusterInit{ClusterId: c.ClusterId, OffsetGroups: c.OffsetGroups, DataGroups: c.DataGroups}
	return &logpb.Result{}, a.write(keyClusterID, rec)
}

func (a *applier) memberPut(mp *logpb.MemberPut) (*logpb.Result, error) {
	if mp.Id == "" || mp.Addr == "" {
		return invalid("member id and addr must be set"), nil
	}
	a.st.Revision++
	return &logpb.Result{}, a.write(memberKey(mp.Id), mp)
}

func (a *applier) memberRemove(id string) (*logpb.Result, error) {
	_, ok, err := a.b.Get(a.m.space, memberKey(id))
	if err != nil {
		return nil, err
	}
	if !ok {
		return &logpb.Result{Code: logpb.Code_CODE_NOT_FOUND}, nil
	}
	a.st.Revision++
	a.b.Delete(a.m.space, memberKey(id))
	return &logpb.Result{Count: 1}, nil
}
