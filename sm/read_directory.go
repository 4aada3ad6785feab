package sm

import (
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// Directory reads the directory from one consistent view: its version, the
// cluster version, the cluster record, the members and every group record (in name order).
func (m *Machine) Directory() (*state.Directory, error) {
	d := &state.Directory{}
	err := m.read(func() error {
		sn := m.db.NewSnapshot()
		defer sn.Close()
		var err error
		if d.Version, err = storedU64(sn.Get(m.space, keyDirVer)); err != nil {
			return err
		}
		cv, err := storedU64(sn.Get(m.space, keyClusterVersion))
		if err != nil {
			return err
		}
		d.ClusterVersion = uint32(cv)
		if v, ok, err := sn.Get(m.space, keyClusterID); err != nil {
			return err
		} else if ok {
			d.Cluster = &logpb.ClusterInit{}
			if err := proto.Unmarshal(v, d.Cluster); err != nil {
				return err
			}
		}
		p := []byte{prefixCluster, 'm'}
		if d.Members, err = decodeAll(func(fn func(k, v []byte) bool) error {
			return sn.Scan(m.space, p, prefixEnd(p), fn)
		}, func() *logpb.MemberPut { return &logpb.MemberPut{} }); err != nil {
			return err
		}
		p = []byte{prefixCluster, 'g'}
		if d.Groups, err = decodeAll(func(fn func(k, v []byte) bool) error {
			return sn.Scan(m.space, p, prefixEnd(p), fn)
		}, func() *logpb.GroupRecord { return &logpb.GroupRecord{} }); err != nil {
			return err
		}
		p = alarmsPrefix
		d.Alarms, err = decodeAll(func(fn func(k, v []byte) bool) error {
			return sn.Scan(m.space, p, prefixEnd(p), fn)
		}, func() *logpb.AlarmSet { return &logpb.AlarmSet{} })
		return err
	})
	return d, err
}
