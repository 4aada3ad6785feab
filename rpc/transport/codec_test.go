package transport

import (
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/metamq/meta/rpc/transport/raftpb"
)

// Byte slices are drawn nil or non-empty: the wire, like raft, does not
// tell nil from empty.
func genBytes(t *rapid.T, label string) []byte {
	b := rapid.SliceOfN(rapid.Byte(), 0, 40).Draw(t, label)
	if len(b) == 0 {
		return nil
	}
	return b
}

func genHeader(t *rapid.T) raft.RPCHeader {
	return raft.RPCHeader{
		ProtocolVersion: raft.ProtocolVersion(rapid.Int().Draw(t, "protocol_version")),
		ID:              genBytes(t, "id"),
		Addr:            genBytes(t, "addr"),
	}
}

// genTime draws the zero time or any instant from year 1 to 9999, in UTC
// (the wire keeps the instant, not the location).
func genTime(t *rapid.T, label string) time.Time {
	if rapid.Bool().Draw(t, label+"_zero") {
		return time.Time{}
	}
	sec := rapid.Int64Range(zeroUnix, 253402300799).Draw(t, label+"_sec")
	nsec := rapid.Int64Range(0, 999999999).Draw(t, label+"_nsec")
	return time.Unix(sec, nsec).UTC()
}

func genLogs(t *rapid.T) []*raft.Log {
	n := rapid.IntRange(0, 5).Draw(t, "entries")
	if n == 0 {
		return nil
	}
	logs := make([]*raft.Log, n)
	for i := range logs {
		logs[i] = &raft.Log{
			Index:      rapid.Uint64().Draw(t, "index"),
			Term:       rapid.Uint64().Draw(t, "term"),
			Type:       raft.LogType(rapid.Uint8().Draw(t, "type")),
			Data:       genBytes(t, "data"),
			Extensions: genBytes(t, "extensions"),
			AppendedAt: genTime(t, "appended_at"),
		}
	}
	return logs
}

// wire marshals and unmarshals m, so the round trip crosses real bytes.
func wire[M proto.Message](t *rapid.T, m M, into M) M {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	if err := proto.Unmarshal(b, into); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	return into
}

func checkEqual(t *rapid.T, got, want any) {
	// Entries are pointers: name the first entry that differs.
	g, gok := got.(*raft.AppendEntriesRequest)
	w, wok := want.(*raft.AppendEntriesRequest)
	if gok && wok && len(g.Entries) == len(w.Entries) {
		for i := range g.Entries {
			if !reflect.DeepEqual(g.Entries[i], w.Entries[i]) {
				t.Fatalf("entry %d:\n got %+v\nwant %+v", i, *g.Entries[i], *w.Entries[i])
			}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %#v\nwant %#v", got, want)
	}
}

func checkRoute(t *rapid.T, gotCluster, gotGroup, cluster, group string) {
	if gotCluster != cluster || gotGroup != group {
		t.Fatalf("route: got (%q, %q), want (%q, %q)", gotCluster, gotGroup, cluster, group)
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		check func(t *rapid.T, cluster, group string)
	}{
		{"AppendEntriesRequest", func(t *rapid.T, cluster, group string) {
			in := &raft.AppendEntriesRequest{
				RPCHeader:         genHeader(t),
				Term:              rapid.Uint64().Draw(t, "term"),
				Leader:            genBytes(t, "leader"),
				PrevLogEntry:      rapid.Uint64().Draw(t, "prev_log_entry"),
				PrevLogTerm:       rapid.Uint64().Draw(t, "prev_log_term"),
				Entries:           genLogs(t),
				LeaderCommitIndex: rapid.Uint64().Draw(t, "leader_commit_index"),
			}
			pb := wire(t, encodeAppendEntriesRequest(cluster, group, in), &raftpb.AppendEntriesRequest{})
			checkRoute(t, pb.GetClusterId(), pb.GetGroup(), cluster, group)
			checkEqual(t, decodeAppendEntriesRequest(pb), in)
		}},
		{"AppendEntriesResponse", func(t *rapid.T, _, _ string) {
			in := &raft.AppendEntriesResponse{
				RPCHeader:      genHeader(t),
				Term:           rapid.Uint64().Draw(t, "term"),
				LastLog:        rapid.Uint64().Draw(t, "last_log"),
				Success:        rapid.Bool().Draw(t, "success"),
				NoRetryBackoff: rapid.Bool().Draw(t, "no_retry_backoff"),
			}
			var out raft.AppendEntriesResponse
			decodeAppendEntriesResponse(wire(t, encodeAppendEntriesResponse(in), &raftpb.AppendEntriesResponse{}), &out)
			checkEqual(t, &out, in)
		}},
		{"RequestVoteRequest", func(t *rapid.T, cluster, group string) {
			in := &raft.RequestVoteRequest{
				RPCHeader:          genHeader(t),
				Term:               rapid.Uint64().Draw(t, "term"),
				Candidate:          genBytes(t, "candidate"),
				LastLogIndex:       rapid.Uint64().Draw(t, "last_log_index"),
				LastLogTerm:        rapid.Uint64().Draw(t, "last_log_term"),
				LeadershipTransfer: rapid.Bool().Draw(t, "leadership_transfer"),
			}
			pb := wire(t, encodeRequestVoteRequest(cluster, group, in), &raftpb.RequestVoteRequest{})
			checkRoute(t, pb.GetClusterId(), pb.GetGroup(), cluster, group)
			checkEqual(t, decodeRequestVoteRequest(pb), in)
		}},
		{"RequestVoteResponse", func(t *rapid.T, _, _ string) {
			in := &raft.RequestVoteResponse{
				RPCHeader: genHeader(t),
				Term:      rapid.Uint64().Draw(t, "term"),
				Peers:     genBytes(t, "peers"),
				Granted:   rapid.Bool().Draw(t, "granted"),
			}
			var out raft.RequestVoteResponse
			decodeRequestVoteResponse(wire(t, encodeRequestVoteResponse(in), &raftpb.RequestVoteResponse{}), &out)
			checkEqual(t, &out, in)
		}},
		{"RequestPreVoteRequest", func(t *rapid.T, cluster, group string) {
			in := &raft.RequestPreVoteRequest{
				RPCHeader:    genHeader(t),
				Term:         rapid.Uint64().Draw(t, "term"),
				LastLogIndex: rapid.Uint64().Draw(t, "last_log_index"),
				LastLogTerm:  rapid.Uint64().Draw(t, "last_log_term"),
			}
			pb := wire(t, encodeRequestPreVoteRequest(cluster, group, in), &raftpb.RequestPreVoteRequest{})
			checkRoute(t, pb.GetClusterId(), pb.GetGroup(), cluster, group)
			checkEqual(t, decodeRequestPreVoteRequest(pb), in)
		}},
		{"RequestPreVoteResponse", func(t *rapid.T, _, _ string) {
			in := &raft.RequestPreVoteResponse{
				RPCHeader: genHeader(t),
				Term:      rapid.Uint64().Draw(t, "term"),
				Granted:   rapid.Bool().Draw(t, "granted"),
			}
			var out raft.RequestPreVoteResponse
			decodeRequestPreVoteResponse(wire(t, encodeRequestPreVoteResponse(in), &raftpb.RequestPreVoteResponse{}), &out)
			checkEqual(t, &out, in)
		}},
		{"TimeoutNowRequest", func(t *rapid.T, cluster, group string) {
			in := &raft.TimeoutNowRequest{RPCHeader: genHeader(t)}
			pb := wire(t, encodeTimeoutNowRequest(cluster, group, in), &raftpb.TimeoutNowRequest{})
			checkRoute(t, pb.GetClusterId(), pb.GetGroup(), cluster, group)
			checkEqual(t, decodeTimeoutNowRequest(pb), in)
		}},
		{"TimeoutNowResponse", func(t *rapid.T, _, _ string) {
			in := &raft.TimeoutNowResponse{RPCHeader: genHeader(t)}
			var out raft.TimeoutNowResponse
			decodeTimeoutNowResponse(wire(t, encodeTimeoutNowResponse(in), &raftpb.TimeoutNowResponse{}), &out)
			checkEqual(t, &out, in)
		}},
		{"InstallSnapshotRequest", func(t *rapid.T, cluster, group string) {
			in := &raft.InstallSnapshotRequest{
				RPCHeader:          genHeader(t),
				SnapshotVersion:    raft.SnapshotVersion(rapid.Int().Draw(t, "snapshot_version")),
				Term:               rapid.Uint64().Draw(t, "term"),
				Leader:             genBytes(t, "leader"),
				LastLogIndex:       rapid.Uint64().Draw(t, "last_log_index"),
				LastLogTerm:        rapid.Uint64().Draw(t, "last_log_term"),
				Peers:              genBytes(t, "peers"),
				Configuration:      genBytes(t, "configuration"),
				ConfigurationIndex: rapid.Uint64().Draw(t, "configuration_index"),
				Size:               rapid.Int64().Draw(t, "size"),
			}
			chunk := &raftpb.InstallSnapshotChunk{Kind: &raftpb.InstallSnapshotChunk_Request{
				Request: encodeInstallSnapshotRequest(cluster, group, in),
			}}
			pb := wire(t, chunk, &raftpb.InstallSnapshotChunk{}).GetRequest()
			checkRoute(t, pb.GetClusterId(), pb.GetGroup(), cluster, group)
			checkEqual(t, decodeInstallSnapshotRequest(pb), in)
		}},
		{"InstallSnapshotResponse", func(t *rapid.T, _, _ string) {
			in := &raft.InstallSnapshotResponse{
				RPCHeader: genHeader(t),
				Term:      rapid.Uint64().Draw(t, "term"),
				Success:   rapid.Bool().Draw(t, "success"),
			}
			var out raft.InstallSnapshotResponse
			decodeInstallSnapshotResponse(wire(t, encodeInstallSnapshotResponse(in), &raftpb.InstallSnapshotResponse{}), &out)
			checkEqual(t, &out, in)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rapid.Check(t, func(rt *rapid.T) {
				cluster := rapid.String().Draw(rt, "cluster")
				group := rapid.String().Draw(rt, "group")
				tt.check(rt, cluster, group)
			})
		})
	}
}

// TestRaftStructsUnchanged fails when hashicorp/raft adds a field to an RPC
// struct, so that a module upgrade cannot silently drop it on the wire: the
// codec, the proto and TestRoundTrip must then be extended.
func TestRaftStructsUnchanged(t *testing.T) {
	tests := []struct {
		v      any
		fields int
	}{
		{raft.RPCHeader{}, 3},
		{raft.Log{}, 6},
		{raft.AppendEntriesRequest{}, 7},
		{raft.AppendEntriesResponse{}, 5},
		{raft.RequestVoteRequest{}, 6},
		{raft.RequestVoteResponse{}, 4},
		{raft.RequestPreVoteRequest{}, 4},
		{raft.RequestPreVoteResponse{}, 3},
		{raft.TimeoutNowRequest{}, 1},
		{raft.TimeoutNowResponse{}, 1},
		{raft.InstallSnapshotRequest{}, 10},
		{raft.InstallSnapshotResponse{}, 3},
	}
	for _, tt := range tests {
		typ := reflect.TypeOf(tt.v)
		if got := typ.NumField(); got != tt.fields {
			t.Errorf("%s: got %d fields, want %d", typ.Name(), got, tt.fields)
		}
	}
}

func TestTimeZeroIsAbsent(t *testing.T) {
	if sec, nsec := encodeTime(time.Time{}); sec != 0 || nsec != 0 {
		t.Fatalf("zero time: got (%d, %d), want (0, 0)", sec, nsec)
	}
	epoch := time.Unix(0, 0).UTC()
	if got := decodeTime(encodeTime(epoch)); !got.Equal(epoch) || got.IsZero() {
		t.Fatalf("epoch: got %v, want %v", got, epoch)
	}
	now := time.Now()
	if got := decodeTime(encodeTime(now)); !got.Equal(now) {
		t.Fatalf("now: got %v, want %v", got, now)
	}
}

func TestIsHeartbeat(t *testing.T) {
	hb := func(edit func(*raft.AppendEntriesRequest)) *raft.AppendEntriesRequest {
		r := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte("a:1")}, Term: 3}
		if edit != nil {
			edit(r)
		}
		return r
	}
	tests := []struct {
		name string
		req  *raft.AppendEntriesRequest
		want bool
	}{
		{"heartbeat", hb(nil), true},
		{"leader in deprecated field", hb(func(r *raft.AppendEntriesRequest) { r.Addr, r.Leader = nil, []byte("a:1") }), true},
		{"no term", hb(func(r *raft.AppendEntriesRequest) { r.Term = 0 }), false},
		{"no leader", hb(func(r *raft.AppendEntriesRequest) { r.Addr = nil }), false},
		{"prev entry", hb(func(r *raft.AppendEntriesRequest) { r.PrevLogEntry = 1 }), false},
		{"prev term", hb(func(r *raft.AppendEntriesRequest) { r.PrevLogTerm = 1 }), false},
		{"entries", hb(func(r *raft.AppendEntriesRequest) { r.Entries = []*raft.Log{{Index: 1}} }), false},
		{"commit index", hb(func(r *raft.AppendEntriesRequest) { r.LeaderCommitIndex = 1 }), false},
	}
	for _, tt := range tests {
		if got := isHeartbeat(tt.req); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}
