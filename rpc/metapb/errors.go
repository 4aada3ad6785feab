package metapb

import (
	"errors"
	"fmt"
	"maps"

	"google.golang.org/grpc/codes"
)

// The error vocabulary. "Was it applied?" has one answer everywhere: every
// failure carries a reason (below), and the reason alone decides its
// class: applied (no error), definitely not applied, or unknown. Each
// layer carries the reason as it is and maps it exactly once at its own
// boundary:
//
//	outcome            node (metanode)         peer wire (raftpb)        public API (gRPC)          Go client
//	-----------------  ----------------------  ------------------------  -------------------------  ---------------------------------
//	applied            nil                     OK                        OK                         nil
//	NOT_LEADER         *NotLeaderError         PeerError NOT_LEADER      Unavailable + ErrorInfo    retried at the hinted leader
//	                   (group, leader hint)    + metadata (hint)         (group, leader_id, _addr)
//	NO_LEADER          ErrNoLeader             PeerError UNAVAILABLE     Unavailable                retried with backoff
//	SHUTTING_DOWN      ErrShuttingDown         PeerError UNAVAILABLE     Unavailable                retried elsewhere
//	INVALID_ARGUMENT   ErrInvalid (+ field)    PeerError REJECTED        InvalidArgument + field    returned
//	CLUSTER_MISMATCH   ErrClusterMismatch      PeerError REJECTED        FailedPrecondition         returned
//	NOT_FOUND, ALREADY_EXISTS, REVISION_CONFLICT, STALE_EPOCH, COMPACTED:
//	                   results or *Error       PeerError REJECTED        NotFound, AlreadyExists,   returned
//	                                                                     FailedPrecondition
//	WRONG_GROUP, RANGE_MOVING, ROUTE_AHEAD (routing: the group's own log
//	refused the key, a range changing hands, a caller ahead of the node):
//	                   result codes, sm.Own-   PeerError UNAVAILABLE     Unavailable                map refreshed, retried
//	                   ershipError
//	OVERLOADED         ErrOverloaded           PeerError UNAVAILABLE     ResourceExhausted          retried with backoff
//	(the leader's proposal queue is full; refused at once, never queued)
//	NO_CLUSTER_RECORD  ErrNoClusterRecord      PeerError UNAVAILABLE     Unavailable                retried with backoff
//	(the cluster record, its members and directory, is not written yet)
//	CLUSTER_VERSION    *ClusterVersionError    PeerError REJECTED        FailedPrecondition         returned
//	(the operation needs a newer cluster version: a member runs an older release)
//	NOSPACE            ErrNoSpace              PeerError REJECTED        ResourceExhausted          returned
//	(a NOSPACE alarm is raised: a write that takes space, refused before it is proposed)
//	SPLIT_FENCED       *Error                  PeerError REJECTED        FailedPrecondition         returned
//	(an abort of a split whose parent's log fenced the range first: the split goes on)
//	TRANSFER_REFUSED   *Error                  PeerError REJECTED        FailedPrecondition         returned
//	(a leadership transfer to a target that could wedge raft: not started)
//	OUTCOME_UNKNOWN    ErrUnknownOutcome       PeerError UNKNOWN         Unknown                    ErrUnknownOutcome, never retried
//
// The wire column's kind is only for peers of the previous release; the
// reason itself crosses the wire too (raftpb.PeerError.outcome), with its
// metadata. An error that carries no reason is an unknown outcome for a
// write (the node may have proposed it) and a plain failure for a read.
// Domain answers that are not failures (a compare-and-swap that did not
// match, a key that is absent) are fields of the response, not errors.
//
// In code: errors implement Coded (Reason and Metadata); ReasonOf finds
// the reason in a chain of wrapped errors, ClassOf classifies a reason,
// and CodeOf gives its gRPC code.

// Class is what a failure says about whether the operation was applied.
type Class int

const (
	// ClassUnknown: it may or may not have been applied. A client must
	// not retry it blindly.
	ClassUnknown Class = iota
	// ClassRetry: definitely not applied, and the same request may
	// succeed on another node or a moment later (after an election).
	ClassRetry
	// ClassFinal: definitely not applied, and sending it again will get
	// the same answer (bad input, a domain refusal).
	ClassFinal
)

func (c Class) String() string {
	switch c {
	case ClassRetry:
		return "not applied (retry)"
	case ClassFinal:
		return "not applied"
	}
	return "unknown"
}

// reasons is the one table of reasons: class and gRPC code.
var reasons = map[string]struct {
	class Class
	code  codes.Code
}{
	ReasonNotLeader:        {ClassRetry, codes.Unavailable},
	ReasonNoLeader:         {ClassRetry, codes.Unavailable},
	ReasonShuttingDown:     {ClassRetry, codes.Unavailable},
	ReasonInvalidArgument:  {ClassFinal, codes.InvalidArgument},
	ReasonClusterMismatch:  {ClassFinal, codes.FailedPrecondition},
	ReasonRevisionConflict: {ClassFinal, codes.FailedPrecondition},
	ReasonCompacted:        {ClassFinal, codes.FailedPrecondition},
	ReasonStaleEpoch:       {ClassFinal, codes.FailedPrecondition},
	ReasonNotFound:         {ClassFinal, codes.NotFound},
	ReasonAlreadyExists:    {ClassFinal, codes.AlreadyExists},
	ReasonOutcomeUnknown:   {ClassUnknown, codes.Unknown},
	ReasonWrongGroup:       {ClassRetry, codes.Unavailable},
	ReasonRangeMoving:      {ClassRetry, codes.Unavailable},
	ReasonRouteAhead:       {ClassRetry, codes.Unavailable},
	ReasonOverloaded:       {ClassRetry, codes.ResourceExhausted},
	ReasonClusterVersion:   {ClassFinal, codes.FailedPrecondition},
	ReasonNoSpace:          {ClassFinal, codes.ResourceExhausted},
	ReasonNoClusterRecord:  {ClassRetry, codes.Unavailable},
	ReasonSplitFenced:      {ClassFinal, codes.FailedPrecondition},
	ReasonTransferRefused:  {ClassFinal, codes.FailedPrecondition},
}

// ClassOf classifies a reason; an unknown reason (from a newer peer) is
// ClassUnknown: never claim that a write failed without knowing it.
func ClassOf(reason string) Class {
	if r, ok := reasons[reason]; ok {
		return r.class
	}
	return ClassUnknown
}

// CodeOf is the gRPC code a reason travels with on the public API.
func CodeOf(reason string) codes.Code {
	if r, ok := reasons[reason]; ok {
		return r.code
	}
	return codes.Unknown
}

// Coded is an error of the vocabulary: it says its reason and the
// reason's metadata (leader hints, the field at fault, a revision). The
// node's, the controller's and the peer wire's errors implement it.
type Coded interface {
	error
	Reason() string
	Metadata() map[string]string
}

// Relayed is a Coded error that relays another node's answer (a call
// forwarded to a peer, refused there): Message is that answer's own text,
// which the public API reports in place of the relay's wrapping (the
// reason and metadata travel as they are). Message is "" when the error
// is not the peer's answer (the call itself failed): then the whole error
// is the message.
type Relayed interface {
	Coded
	Message() string
}

// ReasonOf returns the reason of the first Coded error in err's chain, or
// "" when there is none.
func ReasonOf(err error) string {
	var c Coded
	if errors.As(err, &c) {
		return c.Reason()
	}
	return ""
}

// Error is a Coded error made from a reason, metadata and a message.
type Error struct {
	reason string
	md     map[string]string
	msg    string
}

// NewError returns an error with reason and metadata (which may be nil).
func NewError(reason string, md map[string]string, format string, args ...any) *Error {
	return &Error{reason: reason, md: md, msg: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string               { return e.msg }
func (e *Error) Reason() string              { return e.reason }
func (e *Error) Metadata() map[string]string { return maps.Clone(e.md) }

// Invalid is an INVALID_ARGUMENT error naming the request field at fault.
func Invalid(field, format string, args ...any) *Error {
	return NewError(ReasonInvalidArgument, map[string]string{MetaField: field}, format, args...)
}

// On the public API every error the server produces on purpose carries a
// google.rpc.ErrorInfo detail with Domain ErrorDomain and its reason;
// metadata keys are the Meta* constants.
const (
	ErrorDomain = "meta.metamq.io"

	ReasonNotLeader        = "NOT_LEADER"
	ReasonNoLeader         = "NO_LEADER"
	ReasonShuttingDown     = "SHUTTING_DOWN"
	ReasonInvalidArgument  = "INVALID_ARGUMENT"
	ReasonClusterMismatch  = "CLUSTER_MISMATCH"
	ReasonOutcomeUnknown   = "OUTCOME_UNKNOWN"
	ReasonRevisionConflict = "REVISION_CONFLICT"
	ReasonCompacted        = "COMPACTED"
	ReasonStaleEpoch       = "STALE_EPOCH"
	// NOT_FOUND (code NotFound) and ALREADY_EXISTS (code AlreadyExists)
	// name a missing or existing resource, lease, session or will; the
	// metadata key "field" names the request field they are about.
	ReasonNotFound      = "NOT_FOUND"
	ReasonAlreadyExists = "ALREADY_EXISTS"
	// Routing (rpc/metapb/ranges.go), all definitely not applied:
	// WRONG_GROUP: the group does not own the key's range (the map moved
	// it); route again with a newer map (metadata range_version: the
	// directory version to wait for). RANGE_MOVING: the range is
	// changing hands; retry shortly. ROUTE_AHEAD: the caller knows a
	// newer map than this node, or this node holds none yet (it has
	// not loaded the directory); retry, on another node or shortly.
	ReasonWrongGroup  = "WRONG_GROUP"
	ReasonRangeMoving = "RANGE_MOVING"
	ReasonRouteAhead  = "ROUTE_AHEAD"
	MetaRangeVersion  = "range_version"
	// OVERLOADED (code ResourceExhausted): the group's proposal queue on
	// its leader is full; the request was refused at once, never queued.
	// Retry after a backoff.
	ReasonOverloaded = "OVERLOADED"
	// CLUSTER_VERSION (code FailedPrecondition): the operation needs a
	// newer cluster version than the cluster has (sm/version.go): some
	// member still runs an older release. Definitely not applied; it will
	// be accepted once every member runs a release of the needed level
	// (metadata cluster_version and required_version say both).
	ReasonClusterVersion = "CLUSTER_VERSION"
	MetaClusterVersion   = "cluster_version"
	MetaRequiredVersion  = "required_version"
	// NOSPACE (code ResourceExhausted): a NOSPACE alarm is raised (a
	// member's storage passed its quota or its disk's free-space floor);
	// a write that takes space was refused before it was proposed. Reads
	// and deletes still work; an admin clears the alarm once space is
	// freed (metactl alarm disarm).
	ReasonNoSpace = "NOSPACE"
	// NO_CLUSTER_RECORD (code Unavailable): the cluster record (the cluster's
	// identity, its members and the directory of groups) is not written
	// yet. A new cluster's first metadata-0 leader writes it; a node
	// restored from a backup (metanode restore) knows the new cluster id
	// at once and serves before that, so a member list or a node list
	// read in that window has nothing to list. Definitely not applied:
	// retry shortly (the Go client does, with backoff).
	ReasonNoClusterRecord = "NO_CLUSTER_RECORD"
	// SPLIT_FENCED (code FailedPrecondition): an abort of a split that
	// passed its fence (the parent's log released the range first); the
	// split goes on to its end. Metadata group names the parent.
	ReasonSplitFenced = "SPLIT_FENCED"
	// TRANSFER_REFUSED (code FailedPrecondition): a leadership transfer
	// this node would not start: the only targets had a transfer that did
	// not end cleanly earlier in this leader's term and have not caught up
	// since (a second one could wedge the group: hashicorp/raft#696), or
	// the group has no other voter. The leadership did not move; ask again
	// once the target caught up, or name another.
	ReasonTransferRefused = "TRANSFER_REFUSED"

	MetaCompactRevision = "compact_revision"
	MetaCurrentRevision = "current_revision"

	MetaLeaderID   = "leader_id"
	MetaLeaderAddr = "leader_addr"
	MetaGroup      = "group"
	MetaField      = "field"
)

// Limits on requests, enforced by the servers (InvalidArgument naming the
// field beyond them).
const (
	MaxKeyBytes        = 4096
	MaxValueBytes      = 1 << 20
	MaxListLimit       = 10000
	DefaultListLimit   = 1000
	MaxNameBytes       = 255 // consumer group and topic names
	MaxMetadataBytes   = 4096
	MaxBatchEntries    = 10000
	MaxBatchBytes      = 4 << 20
	MaxMemberIDBytes   = 64
	MaxMemberAddrBytes = 255

	// A MultiGet answers at most MaxReadBytes of keys and values (a read
	// of more is refused, naming keys: ask for fewer at a time).
	MaxReadBytes = 32 << 20

	// Metadata resources: names are 1..MaxNameBytes of [A-Za-z0-9._-];
	// a spec encodes to at most MaxSpecBytes.
	MaxSpecBytes = 1 << 20
	// MQTT: client ids (and broker ids of sessions and claims), session
	// state, topics (names and filters), payloads and properties.
	MaxClientIDBytes     = 256
	MaxBrokerIDBytes     = 255
	MaxSessionStateBytes = 64 << 10
	MaxTopicBytes        = 65535
	MaxPayloadBytes      = 1 << 20
	MaxPropertiesBytes   = 1 << 20
	MaxQoS               = 2
	// A will claim lasts at most a day (0 means the default, 30 s).
	MaxClaimTTLSeconds = 86400
	// Leases: ttl 1..MaxLeaseTTLSeconds; TimeToLive returns at most
	// MaxLeaseKeys keys.
	MaxLeaseTTLSeconds = 31536000
	MaxLeaseKeys       = 10000
	// Watch progress notifications: interval default and minimum.
	DefaultProgressIntervalMs = 5000
	MinProgressIntervalMs     = 100
)
