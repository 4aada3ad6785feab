package transport

import (
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/transport/raftpb"
)

// codecCase decodes wire bytes of one raft message into raft's type and
// encodes it back, so that a second decode can be compared with the first.
type codecCase struct {
	name  string
	round func(wire []byte) (first, second any, ok bool)
}

func codecCases() []codecCase {
	return []codecCase{
		{"AppendEntriesRequest", func(b []byte) (any, any, bool) {
			m := &raftpb.AppendEntriesRequest{}
			if proto.Unmarshal(b, m) != nil {
				return nil, nil, false
			}
			r := decodeAppendEntriesRequest(m)
			return r, decodeAppendEntriesRequest(onWire(encodeAppendEntriesRequest("c", "g", r))), true
		}},
		{"AppendEntriesResponse", func(b []byte) (any, any, bool) {
			m := &raftpb.AppendEntriesResponse{}
			if proto.Unmarshal(b, m) != nil {
				return nil, nil, false
			}
			var r, r2 raft.AppendEntriesResponse
			decodeAppendEntriesResponse(m, &r)
			decodeAppendEntriesResponse(onWire(encodeAppendEntriesResponse(&r)), &r2)
			return r, r2, true
		}},
		{"RequestVoteRequest", func(b []byte) (any, any, bool) {
			m := &raftpb.RequestVoteRequest{}
			if proto.Unmarshal(b, m) != nil {
				return nil, nil, false
			}
			r := decodeRequestVoteRequest(m)
			return r, decodeRequestVoteRequest(onWire(encodeRequestVoteRequest("c", "g", r))), true
		}},
		{"RequestVoteResponse", func(b []byte) (any, any, bool) {
			m := &raftpb.RequestVoteResponse{}
			if proto.Unmarshal(b, m) != nil {
				return nil, nil, false
			}
			var r, r2 raft.RequestVoteResponse
			decodeRequestVoteResponse(m, &r)
			decodeRequestVoteResponse(onWire(encodeRequestVoteResponse(&r)), &r2)
			return r, r2, true
		}},
		{"RequestPreVoteRequest", func(b []byte) (any, any, bool) {
			m := &raftpb.RequestPreVoteRequest{}
			if proto.Unmarshal(b, m) != nil {
				return nil, nil, false
			}
			r := decodeRequestPreVoteRequest(m)
			return r, decodeRequestPreVoteRequest(onWire(encodeRequestPreVoteRequest("c", "g", r))), true
		}},
		{"RequestPreVoteResponse", func(b []byte) (any, any, bool) {
			m := &raftpb.RequestPreVoteResponse{}
			if proto.Unmarshal(b, m) != nil {
				return nil, nil, false
			}
			var r, r2 raft.RequestPreVoteResponse
			decodeRequestPreVoteResponse(m, &r)
			decodeRequestPreVoteResponse(onWire(encodeRequestPreVoteResponse(&r)), &r2)
			return r, r2, true
		}},
		{"TimeoutNowRequest", func(b []byte) (any, any, bool) {
			m := &raftpb.TimeoutNowRequest{}
			if proto.Unmarshal(b, m) != nil {
				return nil, nil, false
			}
			r := decodeTimeoutNowRequest(m)
			return r, decodeTimeoutNowRequest(onWire(encodeTimeoutNowRequest("c", "g", r))), true
		}},
		{"TimeoutNowResponse", func(b []byte) (any, any, bool) {
			m := &raftpb.TimeoutNowResponse{}
			if proto.Unmarshal(b, m) != nil {
				return nil, nil, false
			}
			var r, r2 raft.TimeoutNowResponse
			decodeTimeoutNowResponse(m, &r)
			decodeTimeoutNowResponse(onWire(encodeTimeoutNowResponse(&r)), &r2)
			return r, r2, true
		}},
		{"InstallSnapshotRequest", func(b []byte) (any, any, bool) {
			m := &raftpb.InstallSnapshotRequest{}
			if proto.Unmarshal(b, m) != nil {
				return nil, nil, false
			}
			r := decodeInstallSnapshotRequest(m)
			return r, decodeInstallSnapshotRequest(onWire(encodeInstallSnapshotRequest("c", "g", r))), true
		}},
		{"InstallSnapshotResponse", func(b []byte) (any, any, bool) {
			m := &raftpb.InstallSnapshotResponse{}
			if proto.Unmarshal(b, m) != nil {
				return nil, nil, false
			}
			var r, r2 raft.InstallSnapshotResponse
			decodeInstallSnapshotResponse(m, &r)
			decodeInstallSnapshotResponse(onWire(encodeInstallSnapshotResponse(&r)), &r2)
			return r, r2, true
		}},
		{"HeartbeatBatch", func(b []byte) (any, any, bool) {
			m := &raftpb.HeartbeatBatch{}
			if proto.Unmarshal(b, m) != nil {
				return nil, nil, false
			}
			var first, second []*raft.AppendEntriesRequest
			for _, h := range m.GetHeartbeats() {
				r := decodeAppendEntriesRequest(h)
				first = append(first, r)
				second = append(second, decodeAppendEntriesRequest(onWire(encodeAppendEntriesRequest("c", "g", r))))
				_ = isHeartbeat(r)
			}
			return first, second, true
		}},
	}
}

// onWire sends m through its wire form, as a peer receives it.
func onWire[M proto.Message](m M) M {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	out := m.ProtoReflect().New().Interface().(M)
	if err := proto.Unmarshal(b, out); err != nil {
		panic(err)
	}
	return out
}

// FuzzTransportCodec decodes arbitrary bytes as each raft message a peer
// can send (the first input picks which): decoding never crashes, and what
// was decoded travels through the codec unchanged.
func FuzzTransportCodec(f *testing.F) {
	cases := codecCases()
	seed := onWire(encodeAppendEntriesRequest("c", "g", &raft.AppendEntriesRequest{
		Term: 3, PrevLogEntry: 7, PrevLogTerm: 2, LeaderCommitIndex: 6,
		Entries: []*raft.Log{{Index: 8, Term: 3, Type: raft.LogCommand, Data: []byte("x")}},
	}))
	sb, err := proto.Marshal(seed)
	if err != nil {
		f.Fatal(err)
	}
	hb, err := proto.Marshal(&raftpb.HeartbeatBatch{ClusterId: "c", Heartbeats: []*raftpb.AppendEntriesRequest{seed}})
	if err != nil {
		f.Fatal(err)
	}
	for i := range cases {
		f.Add(uint8(i), []byte{})
		f.Add(uint8(i), sb)
		f.Add(uint8(i), hb)
	}
	f.Fuzz(func(t *testing.T, pick uint8, b []byte) {
		c := cases[int(pick)%len(cases)]
		first, second, ok := c.round(b)
		if ok && !reflect.DeepEqual(first, second) {
			t.Fatalf("%s changed through the codec:\n%#v\n%#v", c.name, first, second)
		}
	})
}
