package metanode

import (
	"context"
	"errors"
	"io"

	"github.com/metamq/meta/rpc/metapb"
)

// Backup exports one group's state for an online backup (see
// metapb.BackupRequest). It first waits, as a linearizable read does, until
// this replica has applied an index the leader confirmed after the call
// arrived, so the export (one storage view, taken after that) holds every
// write acknowledged before the call. The reader streams the export; its
// Close deletes the export's files.
func (n *Node) Backup(ctx context.Context, groupName string) (*metapb.BackupHeader, io.ReadCloser, error) {
	if _, err := n.Read(ctx, groupName, false); err != nil {
		return nil, nil, err
	}
	g, err := n.group(groupName)
	if err != nil {
		return nil, nil, err
	}
	b, err := g.fsm.Backup()
	if err != nil {
		return nil, nil, err
	}
	r, err := b.Reader()
	if err != nil {
		return nil, nil, errors.Join(err, b.Close())
	}
	h := &metapb.BackupHeader{Group: g.name, Kind: g.kind.String(), AppliedIndex: b.Hash.Index, Term: b.Term,
		Revision: b.Hash.Revision, Hash: b.Hash.Hash, Keys: b.Hash.Keys, Size: uint64(b.Size)}
	n.log.Info("backup exported", "group", g.name, "applied", h.AppliedIndex, "keys", h.Keys, "bytes", h.Size)
	return h, readCloser{Reader: r, close: b.Close}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }
