package sm

import (
	"encoding/binary"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// Directory reads the directory from one consistent view: its version, the
// cluster record, the members and every group record (in name order).
func (m *Machine) Directory() (*state.Directory, error) {
	d := &state.Directory{}
	err := m.read(func() error {
		sn := m.db.NewSnapshot()
		defer sn.Close()
		v, ok, err := sn.Get(m.space, keyDirVer)
		if err != nil {
			return err
		}
		if ok && len(v) == 8 {
			d.Version = binary.BigEndian.Uint64(v)
		}
		if v, ok, err = sn.Get(m.space, keyClusterID); err != nil {
			return err
		} else if ok {
			d.Cluster = &logpb.ClusterInit{}
			if err := proto.Unmarshal(v, d.Cluster); err != nil {
				return err
			}
		}
		var derr error
		p := []byte{prefixCluster, 'm'}
		if err := sn.Scan(m.space, p, prefixEnd(p), func(_, v []byte) bool {
			mp := &logpb.MemberPut{}
			if derr = proto.Unmarshal(v, mp); derr != nil {
				return false
			}
			d.Members = append(d.Members, mp)
			return true
		}); err != nil || derr != nil {
			return firstError(err, derr)
		}
		p = []byte{prefixCluster, 'g'}
		if err := sn.Scan(m.space, p, prefixEnd(p), func(_, v []byte) bool {
			g := &logpb.GroupRecord{}
			if derr = proto.Unmarshal(v, g); derr != nil {
				return false
			}
			d.Groups = append(d.Groups, g)
			return true
		}); err != nil || derr != nil {
			return firstError(err, derr)
		}
		return nil
	})
	return d, err
}

func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
