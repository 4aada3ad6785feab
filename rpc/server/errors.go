package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
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
// own log said so): WRONG_GROUP with this node's directory version and
// its ranges of the group's kind (so a client takes them from the error),
// or RANGE_MOVING.
func (s *Server) routingError(group string, moving bool) error {
	if moving {
		return coded(metapb.ReasonRangeMoving, map[string]string{metapb.MetaGroup: group}, group+": the key's range is changing hands; retry shortly")
	}
	return coded(metapb.ReasonWrongGroup, s.rangesMeta(group, s.node.Router()),
		group+" does not own the key's range (the map moved it); route it again")
}

// rangesMeta is a WRONG_GROUP's metadata about group: the group, the
// directory version of r and r's map of the group's kind (none when it
// routes by Shard).
func (s *Server) rangesMeta(group string, r *metapb.Router) map[string]string {
	md := map[string]string{metapb.MetaGroup: group, metapb.MetaRangeVersion: strconv.FormatUint(r.Version, 10)}
	m := r.Data
	if kind, _ := metapb.GroupKind(group); kind == "offset" {
		m = r.Offset
	}
	if len(m) > 0 {
		md[metapb.MetaRanges] = metapb.FormatRanges(m)
	}
	return md
}

// checkRoute refuses a call whose client declared a route
// (metapb.MDRouteGroup, rpc/metapb/ranges.go) when this node routes any of
// its routing keys to a group other than the declared one (groups are
// the groups the node routes them to): WRONG_GROUP with this node's
// ranges when the client's map is older, ROUTE_AHEAD when it is newer.
// Nothing was proposed: definitely not applied. A call that declares
// nothing, or whose keys all route where the client said, passes.
func (s *Server) checkRoute(ctx context.Context, groups ...string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	declared := first(md.Get(metapb.MDRouteGroup))
	if declared == "" {
		return nil
	}
	var off string
	for _, g := range groups {
		if g != declared {
			off = g
			break
		}
	}
	if off == "" {
		return nil
	}
	theirs, err := strconv.ParseUint(first(md.Get(metapb.MDRouteVersion)), 10, 64)
	if err != nil {
		return invalid(metapb.MDRouteVersion, "%q is not a directory version", first(md.Get(metapb.MDRouteVersion)))
	}
	r := s.node.Router()
	if theirs > r.Version {
		return coded(metapb.ReasonRouteAhead, map[string]string{metapb.MetaGroup: declared, metapb.MetaRangeVersion: strconv.FormatUint(r.Version, 10)},
			fmt.Sprintf("the call was routed to %s by a map of version %d, newer than this node's (%d, which routes a key of it to %s); retry, on another node or shortly", declared, theirs, r.Version, off))
	}
	return coded(metapb.ReasonWrongGroup, s.rangesMeta(declared, r),
		fmt.Sprintf("the call was routed to %s by a map of version %d, but a key of it is %s's at version %d; route it again by the ranges this answer carries", declared, theirs, off, r.Version))
}

// first is the first of vs, or "".
func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
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
	msg := err.Error()
	// A peer's refusal of a forwarded call is reported as the peer said
	// it, without the transport's wrapping ("transport: peer call:
	// rejected: ...").
	var rel metapb.Relayed
	if errors.As(err, &rel) && rel.Message() != "" {
		msg = rel.Message()
	}
	st := status.New(metapb.CodeOf(reason), msg)
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
