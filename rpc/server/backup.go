package server

import (
	"errors"
	"fmt"
	"io"

	"github.com/metamq/meta/rpc/metapb"
)

// backupChunkBytes bounds the data of one BackupChunk (and the memory a
// backup holds: the stream is read from the export's files as it is sent).
const backupChunkBytes = 1 << 20

// Backup streams an online backup of one group: its header, then the
// export's bytes in chunks. The node (one hosting the group) makes it
// linearizable; a node that does not host the group answers with a hint to
// one that does.
func (s *Server) Backup(req *metapb.BackupRequest, stream metapb.Cluster_BackupServer) error {
	if err := s.checkGroup(req.Group); err != nil {
		return err
	}
	h, r, err := s.node.Backup(stream.Context(), req.Group)
	if err != nil {
		return s.statusOf(err, false)
	}
	defer r.Close()
	if err := stream.Send(&metapb.BackupChunk{Header: h}); err != nil {
		return err
	}
	buf := make([]byte, backupChunkBytes)
	var sent uint64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if err := stream.Send(&metapb.BackupChunk{Data: buf[:n]}); err != nil {
				return err
			}
			sent += uint64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return s.statusOf(fmt.Errorf("backup of %s: %w", req.Group, err), false)
		}
	}
	if sent != h.Size {
		return s.statusOf(fmt.Errorf("backup of %s: sent %d bytes, the header says %d", req.Group, sent, h.Size), false)
	}
	return nil
}
