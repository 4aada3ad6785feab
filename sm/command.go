package sm

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/sm/logpb"
)

// Entry types. A raft log entry of type LogCommand carries data whose first
// byte is one of these; the rest is the protobuf encoding of the message the
// type names. New types may be added; an entry of a type this build does
// not know is reported as an invalid result on every replica alike (it is
// not skipped silently and does not stop the node).
const (
	// TypeBatch: logpb.Batch, independent operations proposed together.
	TypeBatch byte = 1
)

// ErrUnknownType is returned for an entry whose type byte is not known.
var ErrUnknownType = errors.New("sm: unknown entry type")

var marshal = proto.MarshalOptions{Deterministic: true}

// EncodeBatch encodes a batch as entry data.
func EncodeBatch(b *logpb.Batch) ([]byte, error) {
	size := marshal.Size(b)
	out := make([]byte, 1, 1+size)
	out[0] = TypeBatch
	return marshal.MarshalAppend(out, b)
}

// DecodeBatch decodes entry data of type TypeBatch.
func DecodeBatch(data []byte) (*logpb.Batch, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty entry", ErrUnknownType)
	}
	if data[0] != TypeBatch {
		return nil, fmt.Errorf("%w: %d", ErrUnknownType, data[0])
	}
	return decodeAs(data[1:], &logpb.Batch{}, "batch")
}

// decodeAs decodes b into msg; what names msg in the error.
func decodeAs[M proto.Message](b []byte, msg M, what string) (M, error) {
	if err := proto.Unmarshal(b, msg); err != nil {
		var none M
		return none, fmt.Errorf("sm: decode %s: %w", what, err)
	}
	return msg, nil
}

// EncodeOp and DecodeOp carry single operations between nodes (forwarding).
func EncodeOp(op *logpb.Op) ([]byte, error) { return marshal.Marshal(op) }

// DecodeOp is the inverse of EncodeOp.
func DecodeOp(b []byte) (*logpb.Op, error) {
	return decodeAs(b, &logpb.Op{}, "op")
}

// EncodeResult and DecodeResult carry results back.
func EncodeResult(r *logpb.Result) ([]byte, error) { return marshal.Marshal(r) }

// DecodeResult is the inverse of EncodeResult.
func DecodeResult(b []byte) (*logpb.Result, error) {
	return decodeAs(b, &logpb.Result{}, "result")
}

// Kind is the kind of a group's state machine.
type Kind int

const (
	KindMetadata Kind = iota + 1
	KindOffset
	KindData
)

func (k Kind) String() string {
	switch k {
	case KindMetadata:
		return "metadata"
	case KindOffset:
		return "offset"
	case KindData:
		return "data"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// ParseKind is the inverse of Kind.String.
func ParseKind(s string) (Kind, error) {
	for _, k := range []Kind{KindMetadata, KindOffset, KindData} {
		if k.String() == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("sm: unknown kind %q", s)
}

// Allows reports whether an operation belongs to this kind of group.
func (k Kind) Allows(op *logpb.Op) bool {
	switch op.Op.(type) {
	case *logpb.Op_Put, *logpb.Op_Delete, *logpb.Op_Cas, *logpb.Op_KvPuts, *logpb.Op_KvTxn,
		*logpb.Op_SessionsPut, *logpb.Op_SessionsDelete, *logpb.Op_SessionsExpire,
		*logpb.Op_WillPut, *logpb.Op_WillDelete, *logpb.Op_WillsMarkDue, *logpb.Op_WillClaim, *logpb.Op_WillComplete,
		*logpb.Op_RetainedSet,
		*logpb.Op_LeaseGrant, *logpb.Op_LeaseKeepAlive, *logpb.Op_LeaseRevoke, *logpb.Op_LeasesExpire:
		return k == KindData
	case *logpb.Op_OffsetCommit, *logpb.Op_OffsetDeleteGroup:
		return k == KindOffset
	case *logpb.Op_OwnershipInit, *logpb.Op_RangeRelease, *logpb.Op_RangeIngest, *logpb.Op_RangeAcquire, *logpb.Op_RangeDrop, *logpb.Op_RangeTrack,
		*logpb.Op_RangeAbort, *logpb.Op_RangeReset:
		return k == KindOffset || k == KindData
	case *logpb.Op_ClusterInit, *logpb.Op_MemberPut, *logpb.Op_MemberRemove, *logpb.Op_MemberSetState,
		*logpb.Op_GroupPut, *logpb.Op_GroupsPut, *logpb.Op_DirectoryInit, *logpb.Op_ClusterVersionSet,
		*logpb.Op_ResourceCreate, *logpb.Op_ResourceUpdate, *logpb.Op_ResourceDelete,
		*logpb.Op_BrokerRegister, *logpb.Op_BrokerSetStatus, *logpb.Op_Assign, *logpb.Op_ConnectorReport,
		*logpb.Op_AlarmSet:
		return k == KindMetadata
	case *logpb.Op_EventsCompact:
		return k == KindMetadata || k == KindData
	case *logpb.Op_HashCheck:
		return true
	}
	return false
}
