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
		requestCase("AppendEntriesRequest", decodeAppendEntriesRequest, encodeAppendEntriesRequest),
		responseCase("AppendEntriesResponse", decodeAppendEntriesResponse, encodeAppendEntriesResponse),
		requestCase("RequestVoteRequest", decodeRequestVoteRequest, encodeRequestVoteRequest),
		responseCase("RequestVoteResponse", decodeRequestVoteResponse, encodeRequestVoteResponse),
		requestCase("RequestPreVoteRequest", decodeRequestPreVoteRequest, encodeRequestPreVoteRequest),
		responseCase("RequestPreVoteResponse", decodeRequestPreVoteResponse, encodeRequestPreVoteResponse),
		requestCase("TimeoutNowRequest", decodeTimeoutNowRequest, encodeTimeoutNowRequest),
		responseCase("TimeoutNowResponse", decodeTimeoutNowResponse, encodeTimeoutNowResponse),
		requestCase("InstallSnapshotRequest", decodeInstallSnapshotRequest, encodeInstallSnapshotRequest),
		responseCase("InstallSnapshotResponse", decodeInstallSnapshotResponse, encodeInstallSnapshotResponse),
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

// requestCase is a raft request's case: the request decoded from the
// wire, and the same request encoded, sent and decoded again.
func requestCase[M any, PM interface {
	*M
	proto.Message
}, R any](name string, decode func(PM) R, encode func(cluster, group string, r R) PM) codecCase {
	return codecCase{name, func(b []byte) (any, any, bool) {
		m := PM(new(M))
		if proto.Unmarshal(b, m) != nil {
			return nil, nil, false
		}
		r := decode(m)
		return r, decode(onWire(encode("c", "g", r))), true
	}}
}

// responseCase is requestCase for a raft response, which decodes into a
// value of its own.
func responseCase[M any, PM interface {
	*M
	proto.Message
}, R any](name string, decode func(PM, *R), encode func(*R) PM) codecCase {
	return codecCase{name, func(b []byte) (any, any, bool) {
		m := PM(new(M))
		if proto.Unmarshal(b, m) != nil {
			return nil, nil, false
		}
		var r, r2 R
		decode(m, &r)
		decode(onWire(encode(&r)), &r2)
		return r, r2, true
	}}
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
