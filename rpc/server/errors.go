package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
)

// leaderHint is implemented by the node's not-leader error.
type leaderHint interface {
	error
	Hint() (group, leaderID, leaderAddr string)
}

// fieldError is implemented by invalid-request errors that name a field.
type fieldError interface {
	error
	Field() string
}

// statusOf is the one table from node errors to gRPC statuses. The node
// classifies its errors into the public reasons (Node.ErrorReason); this
// table gives each reason its code and details. An error the node cannot
// classify is an unknown outcome for a write and Unavailable for a read.
func (s *Server) statusOf(err error, write bool) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !isWrapped(err) {
		return err
	}
	switch s.node.ErrorReason(err) {
	case metapb.ReasonNotLeader:
		var lh leaderHint
		md := map[string]string{}
		if errors.As(err, &lh) {
			g, id, addr := lh.Hint()
			md = map[string]string{metapb.MetaGroup: g, metapb.MetaLeaderID: id, metapb.MetaLeaderAddr: addr}
		}
		return withInfo(codes.Unavailable, err.Error(), metapb.ReasonNotLeader, md)
	case metapb.ReasonNoLeader:
		return withInfo(codes.Unavailable, err.Error(), metapb.ReasonNoLeader, nil)
	case metapb.ReasonShuttingDown:
		return withInfo(codes.Unavailable, err.Error(), metapb.ReasonShuttingDown, nil)
	case metapb.ReasonInvalidArgument:
		var fe fieldError
		if errors.As(err, &fe) {
			return invalidArgument(fe.Field(), err.Error())
		}
		return invalidArgument("", err.Error())
	case metapb.ReasonClusterMismatch:
		return withInfo(codes.FailedPrecondition, err.Error(), metapb.ReasonClusterMismatch, nil)
	case metapb.ReasonOutcomeUnknown:
		return withInfo(codes.Unknown, err.Error(), metapb.ReasonOutcomeUnknown, nil)
	}
	if write {
		return withInfo(codes.Unknown, err.Error(), metapb.ReasonOutcomeUnknown, nil)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Unavailable, err.Error())
}

// isWrapped reports whether err carries more than a bare status (a status
// error wrapped in a node error must still go through the table).
func isWrapped(err error) bool { return errors.Unwrap(err) != nil }

func withInfo(code codes.Code, msg, reason string, md map[string]string) error {
	st := status.New(code, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: metapb.ErrorDomain, Metadata: md}); err == nil {
		return d.Err()
	}
	return st.Err()
}

// invalidArgument builds the status for bad input: the message names the
// field, and so do an ErrorInfo and a BadRequest detail.
func invalidArgument(field, msg string) error {
	st := status.New(codes.InvalidArgument, msg)
	info := &errdetails.ErrorInfo{Reason: metapb.ReasonInvalidArgument, Domain: metapb.ErrorDomain,
		Metadata: map[string]string{metapb.MetaField: field}}
	br := &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: msg}}}
	if d, err := st.WithDetails(info, br); err == nil {
		return d.Err()
	}
	return st.Err()
}

// invalid is a validation failure for field.
func invalid(field, format string, args ...any) error {
	return invalidArgument(field, field+": "+fmt.Sprintf(format, args...))
}

// resultError is the one table from a domain result (logpb.Result.Code) to
// a status, for calls where any result but OK fails the call. subject
// names what the call was about in the message ("resource topic/orders",
// "lease 7"); field names the request field it concerns; current is the
// current revision of the subject, reported with a revision conflict.
// Calls where a compare failure is an answer, not an error (KV CAS, will
// claims), look at the code before they come here.
//
//	CODE_OK              nil
//	CODE_NOT_FOUND       NotFound, reason NOT_FOUND
//	CODE_CONFLICT        AlreadyExists, reason ALREADY_EXISTS
//	CODE_COMPARE_FAILED  FailedPrecondition, reason REVISION_CONFLICT,
//	                     metadata current_revision
//	CODE_INVALID         InvalidArgument (the servers validate first, so
//	                     this signals a bug in the caller or the server)
func resultError(res *logpb.Result, subject, field string, current uint64) error {
	msg := subject + " already exists"
	if res.Message != "" {
		msg = subject + ": " + res.Message
	}
	switch res.Code {
	case logpb.Code_CODE_OK:
		return nil
	case logpb.Code_CODE_NOT_FOUND:
		return withInfo(codes.NotFound, subject+" not found", metapb.ReasonNotFound, map[string]string{metapb.MetaField: field})
	case logpb.Code_CODE_CONFLICT:
		return withInfo(codes.AlreadyExists, msg, metapb.ReasonAlreadyExists, map[string]string{metapb.MetaField: field})
	case logpb.Code_CODE_COMPARE_FAILED:
		return withInfo(codes.FailedPrecondition,
			fmt.Sprintf("%s: revision conflict, current revision is %d", subject, current),
			metapb.ReasonRevisionConflict, map[string]string{metapb.MetaCurrentRevision: strconv.FormatUint(current, 10)})
	}
	return invalidArgument(field, msg)
}

// compactedError tells a watcher that a group's change log no longer
// holds the revision it asked for: re-list, then watch from the listing's
// revision + 1.
func compactedError(group string, requested, compact uint64) error {
	return withInfo(codes.FailedPrecondition,
		fmt.Sprintf("%s: revision %d is compacted (the change log starts at %d); list again and watch from the listing's revision + 1", group, requested, compact),
		metapb.ReasonCompacted, map[string]string{metapb.MetaGroup: group, metapb.MetaCompactRevision: strconv.FormatUint(compact, 10)})
}
