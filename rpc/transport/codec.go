package transport

import (
	"time"

	"github.com/hashicorp/raft"

	"github.com/metamq/meta/rpc/transport/raftpb"
)

// This file converts between hashicorp/raft's RPC structs and raftpb
// messages, field by field. Each encode has a decode that restores every
// field (codec_test.go checks it with generated values). Decoded byte slices
// alias the protobuf message's buffers, which are never reused, so raft may
// keep them.

func encodeHeader(h raft.RPCHeader) *raftpb.RPCHeader {
	return &raftpb.RPCHeader{ProtocolVersion: int64(h.ProtocolVersion), Id: h.ID, Addr: h.Addr}
}

func decodeHeader(h *raftpb.RPCHeader) raft.RPCHeader {
	return raft.RPCHeader{
		ProtocolVersion: raft.ProtocolVersion(h.GetProtocolVersion()),
		ID:              h.GetId(),
		Addr:            h.GetAddr(),
	}
}

// zeroUnix is time.Time{}.Unix(): times travel as seconds since Go's zero
// time so that the zero time (common: raft leaves AppendedAt unset on
// entries it did not append itself) is all-zero fields, i.e. absent.
const zeroUnix = -62135596800

func encodeTime(t time.Time) (sec int64, nsec int32) {
	if t.IsZero() {
		return 0, 0
	}
	return t.Unix() - zeroUnix, int32(t.Nanosecond())
}

func decodeTime(sec int64, nsec int32) time.Time {
	if sec == 0 && nsec == 0 {
		return time.Time{}
	}
	return time.Unix(sec+zeroUnix, int64(nsec)).UTC()
}

func encodeLogs(logs []*raft.Log) []*raftpb.Log {
	if len(logs) == 0 {
		return nil
	}
	// One allocation for all entries instead of one per entry.
	vals := make([]raftpb.Log, len(logs))
	out := make([]*raftpb.Log, len(logs))
	for i, l := range logs {
		v := &vals[i]
		v.Index, v.Term, v.Type = l.Index, l.Term, uint32(l.Type)
		v.Data, v.Extensions = l.Data, l.Extensions
		v.AppendedAtSec, v.AppendedAtNsec = encodeTime(l.AppendedAt)
		out[i] = v
	}
	return out
}

func decodeLogs(in []*raftpb.Log) []*raft.Log {
	if len(in) == 0 {
		return nil
	}
	vals := make([]raft.Log, len(in))
	out := make([]*raft.Log, len(in))
	for i, l := range in {
		vals[i] = raft.Log{
			Index:      l.GetIndex(),
			Term:       l.GetTerm(),
			Type:       raft.LogType(l.GetType()),
			Data:       l.GetData(),
			Extensions: l.GetExtensions(),
			AppendedAt: decodeTime(l.GetAppendedAtSec(), l.GetAppendedAtNsec()),
		}
		out[i] = &vals[i]
	}
	return out
}

func encodeAppendEntriesRequest(cluster, group string, r *raft.AppendEntriesRequest) *raftpb.AppendEntriesRequest {
	return &raftpb.AppendEntriesRequest{
		ClusterId:         cluster,
		Group:             group,
		Header:            encodeHeader(r.RPCHeader),
		Term:              r.Term,
		Leader:            r.Leader,
		PrevLogEntry:      r.PrevLogEntry,
		PrevLogTerm:       r.PrevLogTerm,
		Entries:           encodeLogs(r.Entries),
		LeaderCommitIndex: r.LeaderCommitIndex,
	}
}

func decodeAppendEntriesRequest(r *raftpb.AppendEntriesRequest) *raft.AppendEntriesRequest {
	return &raft.AppendEntriesRequest{
		RPCHeader:         decodeHeader(r.GetHeader()),
		Term:              r.GetTerm(),
		Leader:            r.GetLeader(),
		PrevLogEntry:      r.GetPrevLogEntry(),
		PrevLogTerm:       r.GetPrevLogTerm(),
		Entries:           decodeLogs(r.GetEntries()),
		LeaderCommitIndex: r.GetLeaderCommitIndex(),
	}
}

func encodeAppendEntriesResponse(r *raft.AppendEntriesResponse) *raftpb.AppendEntriesResponse {
	return &raftpb.AppendEntriesResponse{
		Header:         encodeHeader(r.RPCHeader),
		Term:           r.Term,
		LastLog:        r.LastLog,
		Success:        r.Success,
		NoRetryBackoff: r.NoRetryBackoff,
	}
}

// decodeAppendEntriesResponse overwrites every field of out.
func decodeAppendEntriesResponse(r *raftpb.AppendEntriesResponse, out *raft.AppendEntriesResponse) {
	*out = raft.AppendEntriesResponse{
		RPCHeader:      decodeHeader(r.GetHeader()),
		Term:           r.GetTerm(),
		LastLog:        r.GetLastLog(),
		Success:        r.GetSuccess(),
		NoRetryBackoff: r.GetNoRetryBackoff(),
	}
}

func encodeRequestVoteRequest(cluster, group string, r *raft.RequestVoteRequest) *raftpb.RequestVoteRequest {
	return &raftpb.RequestVoteRequest{
		ClusterId:          cluster,
		Group:              group,
		Header:             encodeHeader(r.RPCHeader),
		Term:               r.Term,
		Candidate:          r.Candidate,
		LastLogIndex:       r.LastLogIndex,
		LastLogTerm:        r.LastLogTerm,
		LeadershipTransfer: r.LeadershipTransfer,
	}
}

func decodeRequestVoteRequest(r *raftpb.RequestVoteRequest) *raft.RequestVoteRequest {
	return &raft.RequestVoteRequest{
		RPCHeader:          decodeHeader(r.GetHeader()),
		Term:               r.GetTerm(),
		Candidate:          r.GetCandidate(),
		LastLogIndex:       r.GetLastLogIndex(),
		LastLogTerm:        r.GetLastLogTerm(),
		LeadershipTransfer: r.GetLeadershipTransfer(),
	}
}

func encodeRequestVoteResponse(r *raft.RequestVoteResponse) *raftpb.RequestVoteResponse {
	return &raftpb.RequestVoteResponse{
		Header:  encodeHeader(r.RPCHeader),
		Term:    r.Term,
		Peers:   r.Peers,
		Granted: r.Granted,
	}
}

func decodeRequestVoteResponse(r *raftpb.RequestVoteResponse, out *raft.RequestVoteResponse) {
	*out = raft.RequestVoteResponse{
		RPCHeader: decodeHeader(r.GetHeader()),
		Term:      r.GetTerm(),
		Peers:     r.GetPeers(),
		Granted:   r.GetGranted(),
	}
}

func encodeRequestPreVoteRequest(cluster, group string, r *raft.RequestPreVoteRequest) *raftpb.RequestPreVoteRequest {
	return &raftpb.RequestPreVoteRequest{
		ClusterId:    cluster,
		Group:        group,
		Header:       encodeHeader(r.RPCHeader),
		Term:         r.Term,
		LastLogIndex: r.LastLogIndex,
		LastLogTerm:  r.LastLogTerm,
	}
}

func decodeRequestPreVoteRequest(r *raftpb.RequestPreVoteRequest) *raft.RequestPreVoteRequest {
	return &raft.RequestPreVoteRequest{
		RPCHeader:    decodeHeader(r.GetHeader()),
		Term:         r.GetTerm(),
		LastLogIndex: r.GetLastLogIndex(),
		LastLogTerm:  r.GetLastLogTerm(),
	}
}

func encodeRequestPreVoteResponse(r *raft.RequestPreVoteResponse) *raftpb.RequestPreVoteResponse {
	return &raftpb.RequestPreVoteResponse{
		Header:  encodeHeader(r.RPCHeader),
		Term:    r.Term,
		Granted: r.Granted,
	}
}

func decodeRequestPreVoteResponse(r *raftpb.RequestPreVoteResponse, out *raft.RequestPreVoteResponse) {
	*out = raft.RequestPreVoteResponse{
		RPCHeader: decodeHeader(r.GetHeader()),
		Term:      r.GetTerm(),
		Granted:   r.GetGranted(),
	}
}

func encodeTimeoutNowRequest(cluster, group string, r *raft.TimeoutNowRequest) *raftpb.TimeoutNowRequest {
	return &raftpb.TimeoutNowRequest{ClusterId: cluster, Group: group, Header: encodeHeader(r.RPCHeader)}
}

func decodeTimeoutNowRequest(r *raftpb.TimeoutNowRequest) *raft.TimeoutNowRequest {
	return &raft.TimeoutNowRequest{RPCHeader: decodeHeader(r.GetHeader())}
}

func encodeTimeoutNowResponse(r *raft.TimeoutNowResponse) *raftpb.TimeoutNowResponse {
	return &raftpb.TimeoutNowResponse{Header: encodeHeader(r.RPCHeader)}
}

func decodeTimeoutNowResponse(r *raftpb.TimeoutNowResponse, out *raft.TimeoutNowResponse) {
	*out = raft.TimeoutNowResponse{RPCHeader: decodeHeader(r.GetHeader())}
}

func encodeInstallSnapshotRequest(cluster, group string, r *raft.InstallSnapshotRequest) *raftpb.InstallSnapshotRequest {
	return &raftpb.InstallSnapshotRequest{
		ClusterId:          cluster,
		Group:              group,
		Header:             encodeHeader(r.RPCHeader),
		SnapshotVersion:    int64(r.SnapshotVersion),
		Term:               r.Term,
		Leader:             r.Leader,
		LastLogIndex:       r.LastLogIndex,
		LastLogTerm:        r.LastLogTerm,
		Peers:              r.Peers,
		Configuration:      r.Configuration,
		ConfigurationIndex: r.ConfigurationIndex,
		Size:               r.Size,
	}
}

func decodeInstallSnapshotRequest(r *raftpb.InstallSnapshotRequest) *raft.InstallSnapshotRequest {
	return &raft.InstallSnapshotRequest{
		RPCHeader:          decodeHeader(r.GetHeader()),
		SnapshotVersion:    raft.SnapshotVersion(r.GetSnapshotVersion()),
		Term:               r.GetTerm(),
		Leader:             r.GetLeader(),
		LastLogIndex:       r.GetLastLogIndex(),
		LastLogTerm:        r.GetLastLogTerm(),
		Peers:              r.GetPeers(),
		Configuration:      r.GetConfiguration(),
		ConfigurationIndex: r.GetConfigurationIndex(),
		Size:               r.GetSize(),
	}
}

func encodeInstallSnapshotResponse(r *raft.InstallSnapshotResponse) *raftpb.InstallSnapshotResponse {
	return &raftpb.InstallSnapshotResponse{
		Header:  encodeHeader(r.RPCHeader),
		Term:    r.Term,
		Success: r.Success,
	}
}

func decodeInstallSnapshotResponse(r *raftpb.InstallSnapshotResponse, out *raft.InstallSnapshotResponse) {
	*out = raft.InstallSnapshotResponse{
		RPCHeader: decodeHeader(r.GetHeader()),
		Term:      r.GetTerm(),
		Success:   r.GetSuccess(),
	}
}

// isHeartbeat reports whether r is a raft heartbeat, with the same test as
// raft's own NetworkTransport: a term and a leader address, no previous
// entry, no entries and no commit index. Heartbeats bypass the consumer
// queue so that a follower busy with a long operation (a snapshot restore)
// still hears from its leader and does not start an election.
func isHeartbeat(r *raft.AppendEntriesRequest) bool {
	leader := r.Addr
	if len(leader) == 0 {
		leader = r.Leader
	}
	return r.Term != 0 && len(leader) != 0 &&
		r.PrevLogEntry == 0 && r.PrevLogTerm == 0 &&
		len(r.Entries) == 0 && r.LeaderCommitIndex == 0
}
