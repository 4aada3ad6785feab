package metanode

import (
	"fmt"

	"github.com/metamq/meta/rpc/metapb"
)

// Errors of node operations, in meta's one vocabulary (rpc/metapb/errors.go):
// each says its reason, so the public servers, the peer wire and the client
// all classify it the same way without a table of their own. The first
// group means "definitely not applied".
var (
	ErrNotLeader      error = &sentinel{"metanode: not the leader", metapb.ReasonNotLeader}
	ErrNoLeader       error = &sentinel{"metanode: no leader", metapb.ReasonNoLeader}
	ErrShuttingDown   error = &sentinel{"metanode: shutting down", metapb.ReasonShuttingDown}
	ErrUnknownGroup   error = &sentinel{"metanode: unknown group", metapb.ReasonInvalidArgument}
	ErrNotStarted     error = &sentinel{"metanode: not started", metapb.ReasonNoLeader}
	ErrInvalid        error = &sentinel{"metanode: invalid request", metapb.ReasonInvalidArgument}
	ErrUnknownOutcome error = &sentinel{"metanode: outcome unknown", metapb.ReasonOutcomeUnknown}
	// ErrOverloaded: the group's proposal queue is full; the operation was
	// refused at once, never queued (definite; retry after a backoff).
	ErrOverloaded error = &sentinel{"metanode: overloaded: the group's proposal queue is full", metapb.ReasonOverloaded}
	// ErrReplicaHalted: this node's replica of the group halted (a
	// storage failure, a fence after a hash check, an entry it cannot
	// apply: sm/halt.go) and serves no read; another node's does (the
	// reason is SHUTTING_DOWN's: retried elsewhere).
	ErrReplicaHalted error = &sentinel{"metanode: this node's replica of the group halted", metapb.ReasonShuttingDown}
	// ErrNoClusterRecord: the cluster record (identity, members, directory)
	// is not written yet: a new or just restored cluster whose first
	// metadata-0 leader has not recorded it. Retry shortly.
	ErrNoClusterRecord error = &sentinel{"metanode: the cluster record is not written yet (its first metadata leader writes it); retry shortly", metapb.ReasonNoClusterRecord}
	// ErrClusterMismatch: the data directory, the flags and the cluster
	// disagree about the cluster's identity or shape.
	ErrClusterMismatch error = &sentinel{"metanode: cluster mismatch", metapb.ReasonClusterMismatch}
)

// sentinel is an error value with a reason; errors.Is matches it by
// identity.
type sentinel struct{ msg, reason string }

func (e *sentinel) Error() string               { return e.msg }
func (e *sentinel) Reason() string              { return e.reason }
func (e *sentinel) Metadata() map[string]string { return nil }

// NotLeaderError says which node leads a group, when known.
type NotLeaderError struct {
	Group      string
	LeaderID   string
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return fmt.Sprintf("metanode: %s: not the leader, leader unknown", e.Group)
	}
	return fmt.Sprintf("metanode: %s: not the leader; leader is %s at %s", e.Group, e.LeaderID, e.LeaderAddr)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// Reason is NOT_LEADER, or NO_LEADER when the leader is unknown.
func (e *NotLeaderError) Reason() string { return leaderReason(e.LeaderID != "") }

// Metadata carries the leader hint.
func (e *NotLeaderError) Metadata() map[string]string {
	return leaderHint(e.Group, e.LeaderID, e.LeaderAddr)
}

// leaderReason is NOT_LEADER when a node to go to is known, else
// NO_LEADER.
func leaderReason(known bool) string {
	if !known {
		return metapb.ReasonNoLeader
	}
	return metapb.ReasonNotLeader
}

// leaderHint is the metadata naming the node that serves a group.
func leaderHint(group, id, addr string) map[string]string {
	return map[string]string{metapb.MetaGroup: group, metapb.MetaLeaderID: id, metapb.MetaLeaderAddr: addr}
}

// unknownOutcome wraps the cause of an unknown outcome. Its reason is
// OUTCOME_UNKNOWN whatever the cause says: once a write may have been
// proposed, nothing below may claim it was not applied.
type unknownOutcome struct{ cause error }

func (e *unknownOutcome) Error() string               { return "metanode: outcome unknown: " + e.cause.Error() }
func (e *unknownOutcome) Unwrap() error               { return e.cause }
func (e *unknownOutcome) Is(target error) bool        { return target == ErrUnknownOutcome }
func (e *unknownOutcome) Reason() string              { return metapb.ReasonOutcomeUnknown }
func (e *unknownOutcome) Metadata() map[string]string { return nil }

func unknown(cause error) error { return &unknownOutcome{cause: cause} }

// invalidField is an ErrInvalid that names the offending field.
type invalidField struct {
	field, msg string
}

func (e *invalidField) Error() string        { return "metanode: " + e.field + ": " + e.msg }
func (e *invalidField) Is(target error) bool { return target == ErrInvalid }
func (e *invalidField) Reason() string       { return metapb.ReasonInvalidArgument }
func (e *invalidField) Metadata() map[string]string {
	return map[string]string{metapb.MetaField: e.field}
}

func invalidf(field, format string, args ...any) error {
	return &invalidField{field: field, msg: fmt.Sprintf(format, args...)}
}

// retryable reports whether err says, in the vocabulary, that
// nothing was applied and another attempt (elsewhere, later) may succeed.
func retryable(err error) bool {
	return metapb.ClassOf(metapb.ReasonOf(err)) == metapb.ClassRetry
}
