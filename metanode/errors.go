package metanode

import (
	"context"
	"errors"
	"fmt"

	"github.com/metamq/meta/rpc/metapb"
)

// Errors of node operations. The public servers map them to gRPC statuses
// with errors.Is. The first group means "definitely not applied".
var (
	ErrNotLeader      = errors.New("metanode: not the leader")
	ErrNoLeader       = errors.New("metanode: no leader")
	ErrShuttingDown   = errors.New("metanode: shutting down")
	ErrUnknownGroup   = errors.New("metanode: unknown group")
	ErrNotStarted     = errors.New("metanode: not started")
	ErrInvalid        = errors.New("metanode: invalid request")
	ErrUnknownOutcome = errors.New("metanode: outcome unknown")
	// ErrClusterMismatch: the data directory, the flags and the cluster
	// disagree about the cluster's identity or shape.
	ErrClusterMismatch = errors.New("metanode: cluster mismatch")
)

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

// unknownOutcome wraps the cause of an unknown outcome.
type unknownOutcome struct{ cause error }

func (e *unknownOutcome) Error() string { return "metanode: outcome unknown: " + e.cause.Error() }
func (e *unknownOutcome) Unwrap() error { return e.cause }
func (e *unknownOutcome) Is(target error) bool {
	return target == ErrUnknownOutcome
}

func unknown(cause error) error { return &unknownOutcome{cause: cause} }

// invalidField is an ErrInvalid that names the offending field.
type invalidField struct {
	field, msg string
}

func (e *invalidField) Error() string        { return "metanode: " + e.field + ": " + e.msg }
func (e *invalidField) Is(target error) bool { return target == ErrInvalid }

// Field returns the name of the offending request field.
func (e *invalidField) Field() string { return e.field }

func invalidf(field, format string, args ...any) error {
	return &invalidField{field: field, msg: fmt.Sprintf(format, args...)}
}

// Hint returns the group and its leader, for error mapping.
func (e *NotLeaderError) Hint() (group, leaderID, leaderAddr string) {
	return e.Group, e.LeaderID, e.LeaderAddr
}

// ErrorReason classifies a node error into the public API's reasons
// (rpc/metapb), which say whether the operation was definitely not applied
// or may have been. "" means the error is not the node's: the server then
// treats a write as an unknown outcome.
func (n *Node) ErrorReason(err error) string {
	switch {
	case errors.Is(err, ErrUnknownOutcome):
		return metapb.ReasonOutcomeUnknown
	case errors.Is(err, ErrNotLeader):
		return metapb.ReasonNotLeader
	case errors.Is(err, ErrNoLeader), errors.Is(err, ErrNotStarted):
		return metapb.ReasonNoLeader
	case errors.Is(err, ErrShuttingDown):
		return metapb.ReasonShuttingDown
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrUnknownGroup):
		return metapb.ReasonInvalidArgument
	case errors.Is(err, ErrClusterMismatch):
		return metapb.ReasonClusterMismatch
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return ""
	}
	return ""
}
