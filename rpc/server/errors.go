package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// Errors. The server speaks meta's one vocabulary (rpc/metapb/errors.go):
// handlers return errors that say their reason — the node's, the peer
// wire's, the controller's, or their own (metapb.Invalid, coded) — and the
// public API's interceptor (publicStatus, installed by ServerOptions) turns
// each into its gRPC status exactly once. statusOf only decides what an
// error without a reason means.

// statusOf gives an error without a reason its meaning: an unknown outcome
// for a write (it may have been proposed), a plain failure for a read.
// Errors with a reason, and gRPC's own statuses, pass as they are.
func (s *Server) statusOf(err error, write bool) error {
	if err == nil {
		return nil
	}
	var c metapb.Coded
	if errors.As(err, &c) {
		return err
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var oe *state.OwnershipError
	if errors.As(err, &oe) {
		return s.routingError(oe.Group, oe.Moving)
	}
	if write {
		return coded(metapb.ReasonOutcomeUnknown, nil, err.Error())
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Unavailable, err.Error())
}

// routingError is the answer for a group that does not serve a key (its
// own log said so): WRONG_GROUP with the directory version to wait for, or
// RANGE_MOVING.
func (s *Server) routingError(group string, moving bool) error {
	if moving {
		return coded(metapb.ReasonRangeMoving, map[string]string{metapb.MetaGroup: group}, group+": the key's range is changing hands; retry shortly")
	}
	v := strconv.FormatUint(s.node.Router().Version, 10)
	return coded(metapb.ReasonWrongGroup, map[string]string{metapb.MetaGroup: group, metapb.MetaRangeVersion: v},
		group+" does not own the key's range (the map moved it); route it again")
}

// publicStatus is the one mapping of an error to the public API's status:
// a Coded error gets its reason's code and an ErrorInfo with the reason and
// metadata (and, for INVALID_ARGUMENT, a BadRequest naming the field); a
// status passes as it is.
func publicStatus(err error) error {
	if err == nil {
		return nil
	}
	var c metapb.Coded
	if !errors.As(err, &c) {
		return err
	}
	reason, md := c.Reason(), c.Metadata()
	st := status.New(metapb.CodeOf(reason), err.Error())
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: metapb.ErrorDomain, Metadata: md}}
	if reason == metapb.ReasonInvalidArgument {
		field := md[metapb.MetaField]
		details = append(details, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: err.Error()}}})
	}
	if d, derr := st.WithDetails(details...); derr == nil {
		return d.Err()
	}
	return st.Err()
}

// coded is an error with reason and metadata.
func coded(reason string, md map[string]string, msg string) error {
	return metapb.NewError(reason, md, "%s", msg)
}

// invalidArgument is bad input in field; msg names it.
func invalidArgument(field, msg string) error { return metapb.Invalid(field, "%s", msg) }

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
//	CODE_NOT_FOUND       NOT_FOUND (metadata field)
//	CODE_CONFLICT        ALREADY_EXISTS (metadata field)
//	CODE_COMPARE_FAILED  REVISION_CONFLICT (metadata current_revision)
//	CODE_INVALID         INVALID_ARGUMENT (the servers validate first, so
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
		return coded(metapb.ReasonNotFound, map[string]string{metapb.MetaField: field}, subject+" not found")
	case logpb.Code_CODE_CONFLICT:
		return coded(metapb.ReasonAlreadyExists, map[string]string{metapb.MetaField: field}, msg)
	case logpb.Code_CODE_COMPARE_FAILED:
		return coded(metapb.ReasonRevisionConflict, map[string]string{metapb.MetaCurrentRevision: strconv.FormatUint(current, 10)},
			fmt.Sprintf("%s: revision conflict, current revision is %d", subject, current))
	}
	return invalidArgument(field, msg)
}

// compactedError tells a watcher that a group's change log no longer
// holds the revision it asked for: re-list, then watch from the listing's
// revision + 1.
func compactedError(group string, requested, compact uint64) error {
	return coded(metapb.ReasonCompacted, map[string]string{metapb.MetaGroup: group, metapb.MetaCompactRevision: strconv.FormatUint(compact, 10)},
		fmt.Sprintf("%s: revision %d is compacted (the change log starts at %d); list again and watch from the listing's revision + 1", group, requested, compact))
}
