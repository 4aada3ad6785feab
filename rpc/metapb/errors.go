package metapb

// Errors of the public API are gRPC statuses. Each one the server produces
// on purpose carries a google.rpc.ErrorInfo detail with Domain ErrorDomain
// and one of the reasons below; metadata keys are the Meta* constants.
//
// The reasons split failures into three classes, which is what a client
// must know before it retries:
//
//   - definitely not applied: NOT_LEADER, NO_LEADER, SHUTTING_DOWN,
//     INVALID_ARGUMENT, CLUSTER_MISMATCH (code Unavailable, InvalidArgument or
//     FailedPrecondition). Safe to retry elsewhere or later.
//   - outcome unknown: OUTCOME_UNKNOWN, always with code Unknown. The write
//     may or may not have been applied (leadership lost after the proposal,
//     deadline after it was sent). It must not be retried blindly.
//   - domain results (CAS mismatch, key absent) are not errors: they are
//     fields of the response.
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
