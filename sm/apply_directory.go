package sm

import (
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/sm/logpb"
)

// The directory: every group's record (kind, replica set, configuration
// version, state) and the members' states, in metadata-0. Every change
// raises the directory version, which is what nodes and clients follow.

// checkGroup validates a group record.
func checkGroup(g *logpb.GroupRecord) *logpb.Result {
	if g == nil || g.Name == "" {
		return invalid("group record: name required")
	}
	if _, err := ParseKind(g.Kind); err != nil {
		return invalid("group %s: kind %q", g.Name, g.Kind)
	}
	seen := map[string]bool{}
	for _, r := range g.Replicas {
		if r.Node == "" {
			return invalid("group %s: replica without a node", g.Name)
		}
		if seen[r.Node] {
			return invalid("group %s: two replicas on node %s", g.Name, r.Node)
		}
		seen[r.Node] = true
	}
	return nil
}

// bumpDirectory raises the directory version.
func (a *applier) bumpDirectory() error {
	ver, err := storedU64(a.b.Get(a.m.space, keyDirVer))
	if err != nil {
		return err
	}
	a.b.Put(a.m.space, keyDirVer, binary.BigEndian.AppendUint64(nil, ver+1))
	return nil
}

// groupsPut writes several group records, each compared on its
// configuration version: all or none.
func (a *applier) groupsPut(p *logpb.GroupsPut) (*logpb.Result, error) {
	if len(p.Puts) == 0 {
		return invalid("groups: none given"), nil
	}
	var vals [][]byte
	for _, put := range p.Puts {
		r, err := a.groupPut(put)
		if err != nil {
			return nil, err
		}
		if r.Code != logpb.Code_CODE_OK {
			// apply rolls back the records written before this one.
			return r, nil
		}
		vals = append(vals, r.Value)
	}
	return &logpb.Result{PrevValues: vals}, nil
}

// groupPut writes a group record, compared on its configuration version.
func (a *applier) groupPut(p *logpb.GroupPut) (*logpb.Result, error) {
	if r := checkGroup(p.Group); r != nil {
		return r, nil
	}
	cur := &logpb.GroupRecord{}
	raw, ok, err := a.get(groupKey(p.Group.Name), cur)
	if err != nil {
		return nil, err
	}
	if (!ok && p.ExpectedConfVer != 0) || (ok && cur.ConfVer != p.ExpectedConfVer) {
		return &logpb.Result{Code: logpb.Code_CODE_COMPARE_FAILED, Value: raw,
			Message: fmt.Sprintf("group %s is at configuration version %d, not %d", p.Group.Name, cur.ConfVer, p.ExpectedConfVer)}, nil
	}
	if ok && cur.Kind != p.Group.Kind {
		return invalid("group %s is a %s group, not %s", p.Group.Name, cur.Kind, p.Group.Kind), nil
	}
	rec := proto.CloneOf(p.Group)
	rec.ConfVer = p.ExpectedConfVer + 1
	a.bump()
	if err := a.write(groupKey(rec.Name), rec); err != nil {
		return nil, err
	}
	v, err := marshal.Marshal(rec)
	if err != nil {
		return nil, err
	}
	return &logpb.Result{Value: v}, a.bumpDirectory()
}

// directoryInit records the directory of a cluster created before it
// existed; a no-op once any group record exists.
func (a *applier) directoryInit(d *logpb.DirectoryInit) (*logpb.Result, error) {
	p := []byte{prefixCluster, 'g'}
	found := false
	if err := a.b.Scan(a.m.space, p, prefixEnd(p), func(_, _ []byte) bool { found = true; return false }); err != nil {
		return nil, err
	}
	if found {
		return &logpb.Result{}, nil
	}
	for _, g := range d.Groups {
		if r := checkGroup(g); r != nil {
			return r, nil
		}
	}
	ci := &logpb.ClusterInit{}
	if _, ok, err := a.get(keyClusterID, ci); err != nil {
		return nil, err
	} else if !ok {
		return invalid("directory before the cluster record"), nil
	}
	a.bump()
	for _, g := range d.Groups {
		g = proto.CloneOf(g)
		g.ConfVer = 1
		if err := a.write(groupKey(g.Name), g); err != nil {
			return nil, err
		}
	}
	ci.ReplicationFactor, ci.MetadataReplicationFactor = d.ReplicationFactor, d.MetadataReplicationFactor
	if err := a.write(keyClusterID, ci); err != nil {
		return nil, err
	}
	return &logpb.Result{Count: uint64(len(d.Groups))}, a.bumpDirectory()
}

// memberSetState sets a member's state.
func (a *applier) memberSetState(s *logpb.MemberSetState) (*logpb.Result, error) {
	mp := &logpb.MemberPut{}
	_, ok, err := a.get(memberKey(s.Id), mp)
	if err != nil {
		return nil, err
	}
	if !ok {
		return &logpb.Result{Code: logpb.Code_CODE_NOT_FOUND, Message: "no member " + s.Id}, nil
	}
	if mp.State == s.State {
		return &logpb.Result{}, nil
	}
	mp.State = s.State
	a.bump()
	if err := a.write(memberKey(s.Id), mp); err != nil {
		return nil, err
	}
	return &logpb.Result{}, a.bumpDirectory()
}
