package server

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
)

// metadataService serves typed metadata resources from metadata-0.
//
// Log format. A resource travels through raft as (kind, name, spec) where
// spec is the deterministic protobuf encoding
// (proto.MarshalOptions{Deterministic: true}) of the public spec message
// that the kind names (TopicSpec for RESOURCE_KIND_TOPIC, ...). The state
// machine stores those bytes as they are and never interprets them, so the
// encoding must be deterministic: every replica stores the same bytes, and
// the state hashes agree. Decoding happens here, on the way out.
type metadataService struct {
	metapb.UnimplementedMetadataServer
	s *Server
}

var deterministic = proto.MarshalOptions{Deterministic: true}

// checkResourceName enforces 1..MaxNameBytes of [A-Za-z0-9._-].
func checkResourceName(field, name string) error {
	if err := checkRequired(field, name, metapb.MaxNameBytes); err != nil {
		return err
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return invalid(field, "byte %d (%q) is not one of [A-Za-z0-9._-]", i, c)
		}
	}
	return nil
}

func checkKind(field string, k metapb.ResourceKind) error {
	if k == metapb.ResourceKind_RESOURCE_KIND_UNSPECIFIED {
		return invalid(field, "must be set")
	}
	if _, ok := metapb.ResourceKind_name[int32(k)]; !ok {
		return invalid(field, "unknown kind %d", k)
	}
	return nil
}

// resourceKinds is the one table of resource kinds: each kind's short
// lowercase name, which is also the name of the case of Resource's spec
// oneof that holds the kind's spec.
var resourceKinds = []struct {
	kind metapb.ResourceKind
	word string
}{
	{metapb.ResourceKind_RESOURCE_KIND_BROKER, "broker"},
	{metapb.ResourceKind_RESOURCE_KIND_TOPIC, "topic"},
	{metapb.ResourceKind_RESOURCE_KIND_CONNECTOR, "connector"},
	{metapb.ResourceKind_RESOURCE_KIND_USER, "user"},
	{metapb.ResourceKind_RESOURCE_KIND_ACL, "acl"},
	{metapb.ResourceKind_RESOURCE_KIND_SCHEMA, "schema"},
}

// specOneof is Resource's spec oneof.
var specOneof = (&metapb.Resource{}).ProtoReflect().Descriptor().Oneofs().ByName("spec")

// specField is the case of the spec oneof that holds kind k's spec; nil
// for a kind this build does not know.
func specField(k metapb.ResourceKind) protoreflect.FieldDescriptor {
	for _, rk := range resourceKinds {
		if rk.kind == k {
			return specOneof.Fields().ByName(protoreflect.Name(rk.word))
		}
	}
	return nil
}

// specOf returns the spec message a resource carries, the field name of
// the oneof case, and the kind that case belongs to.
func specOf(r *metapb.Resource) (proto.Message, string, metapb.ResourceKind) {
	rr := r.ProtoReflect()
	fd := rr.WhichOneof(specOneof)
	if fd == nil {
		return nil, "", metapb.ResourceKind_RESOURCE_KIND_UNSPECIFIED
	}
	word := string(fd.Name())
	for _, rk := range resourceKinds {
		if rk.word == word {
			return rr.Get(fd).Message().Interface(), word, rk.kind
		}
	}
	return nil, "", metapb.ResourceKind_RESOURCE_KIND_UNSPECIFIED
}

// checkResource validates a resource of a create or update and returns its
// encoded spec. The server-set fields (revisions, version) are ignored.
func checkResource(r *metapb.Resource) ([]byte, error) {
	if r == nil {
		return nil, invalid("resource", "must be set")
	}
	if err := firstErr(checkKind("resource.kind", r.Kind), checkResourceName("resource.name", r.Name)); err != nil {
		return nil, err
	}
	msg, field, kind := specOf(r)
	if msg == nil || !msg.ProtoReflect().IsValid() {
		return nil, invalid("resource.spec", "must be set (the %s spec)", kindWord(r.Kind))
	}
	if kind != r.Kind {
		return nil, invalid("resource."+field, "a %s spec for a resource of kind %s", field, r.Kind)
	}
	switch sp := msg.(type) {
	case *metapb.TopicSpec:
		if sp.Partitions < 1 {
			return nil, invalid("resource.topic.partitions", "%d, must be at least 1", sp.Partitions)
		}
		if sp.ReplicationFactor < 0 {
			return nil, invalid("resource.topic.replication_factor", "%d, must be >= 0", sp.ReplicationFactor)
		}
	case *metapb.ConnectorSpec:
		if _, ok := metapb.ConnectorState_name[int32(sp.DesiredState)]; !ok {
			return nil, invalid("resource.connector.desired_state", "unknown state %d", sp.DesiredState)
		}
	}
	b, err := deterministic.Marshal(msg)
	if err != nil {
		return nil, invalid("resource."+field, "cannot encode: %v", err)
	}
	if len(b) > metapb.MaxSpecBytes {
		return nil, invalid("resource."+field, "%d bytes encoded, at most %d", len(b), metapb.MaxSpecBytes)
	}
	return b, nil
}

// kindWord is a kind's short lowercase name ("topic").
func kindWord(k metapb.ResourceKind) string {
	for _, rk := range resourceKinds {
		if rk.kind == k {
			return rk.word
		}
	}
	return fmt.Sprintf("kind%d", int32(k))
}

func subject(k metapb.ResourceKind, name string) string {
	return "resource " + kindWord(k) + "/" + name
}

// toResource decodes a stored resource (its stored encoding) into the
// public message; nil for an empty encoding.
func toResource(raw []byte) (*metapb.Resource, error) {
	return decodeStored(raw, "resource", fromStored)
}

// fromStored converts a stored resource, decoding its spec by kind.
func fromStored(st *logpb.Resource) (*metapb.Resource, error) {
	r := &metapb.Resource{Kind: metapb.ResourceKind(st.Kind), Name: st.Name,
		CreateRevision: st.CreateRevision, ModRevision: st.ModRevision, Version: st.Version}
	fd := specField(r.Kind)
	if fd == nil {
		// A kind this build does not know: return it without a spec
		// rather than fail the whole listing.
		return r, nil
	}
	sp := r.ProtoReflect().NewField(fd).Message()
	r.ProtoReflect().Set(fd, protoreflect.ValueOfMessage(sp))
	msg := sp.Interface()
	if err := proto.Unmarshal(st.Spec, msg); err != nil {
		return nil, fmt.Errorf("server: decode %s spec of %q: %w", kindWord(r.Kind), st.Name, err)
	}
	if u, ok := msg.(*metapb.UserSpec); ok {
		// A stored credential never leaves the node: every answer that
		// carries a resource (reads, listings, watches, write responses)
		// is made here.
		u.CredentialSet, u.Credential = len(u.Credential) > 0, nil
	}
	return r, nil
}

// modRevision returns the mod_revision of a stored resource encoding (0
// when absent or undecodable).
func modRevision(raw []byte) uint64 {
	st := &logpb.Resource{}
	if len(raw) == 0 || proto.Unmarshal(raw, st) != nil {
		return 0
	}
	return st.ModRevision
}

// Create creates a resource; AlreadyExists if one of that kind and name
// exists.
func (m *metadataService) Create(ctx context.Context, req *metapb.CreateResourceRequest) (*metapb.CreateResourceResponse, error) {
	spec, err := checkResource(req.Resource)
	if err != nil {
		return nil, err
	}
	r := req.Resource
	out, _, err := m.write(ctx, r.Kind, r.Name, "resource.name", false, &logpb.Op{Op: &logpb.Op_ResourceCreate{ResourceCreate: &logpb.ResourceCreate{
		Kind: int32(r.Kind), Name: r.Name, Spec: spec}}})
	if err != nil {
		return nil, err
	}
	return &metapb.CreateResourceResponse{Resource: out}, nil
}

// write proposes a create, update or delete (op) of resource kind/name
// (field names the name in the request) and returns its result with the
// resource as stored, or for prev as it was before.
func (m *metadataService) write(ctx context.Context, kind metapb.ResourceKind, name, field string, prev bool, op *logpb.Op) (*metapb.Resource, *logpb.Result, error) {
	res, err := m.s.propose(ctx, metapb.MetadataGroup, op)
	if err != nil {
		return nil, nil, err
	}
	if err := resultError(res, subject(kind, name), field, modRevision(res.PrevValue)); err != nil {
		return nil, nil, err
	}
	raw := res.Value
	if prev {
		raw = res.PrevValue
	}
	out, err := toResource(raw)
	if err != nil {
		return nil, nil, m.s.statusOf(err, false)
	}
	return out, res, nil
}

// Update replaces a resource's spec if its mod_revision is still the
// expected one.
func (m *metadataService) Update(ctx context.Context, req *metapb.UpdateResourceRequest) (*metapb.UpdateResourceResponse, error) {
	spec, err := checkResource(req.Resource)
	if err != nil {
		return nil, err
	}
	if req.ExpectedRevision == 0 {
		return nil, invalid("expected_revision", "must be set (the mod_revision the update is based on)")
	}
	r := req.Resource
	out, _, err := m.write(ctx, r.Kind, r.Name, "resource.name", false, &logpb.Op{Op: &logpb.Op_ResourceUpdate{ResourceUpdate: &logpb.ResourceUpdate{
		Kind: int32(r.Kind), Name: r.Name, Spec: spec, ExpectedRevision: req.ExpectedRevision}}})
	if err != nil {
		return nil, err
	}
	return &metapb.UpdateResourceResponse{Resource: out}, nil
}

// Delete deletes a resource, with expected_revision set only if it still
// has that mod_revision.
func (m *metadataService) Delete(ctx context.Context, req *metapb.DeleteResourceRequest) (*metapb.DeleteResourceResponse, error) {
	if err := firstErr(checkKind("kind", req.Kind), checkResourceName("name", req.Name)); err != nil {
		return nil, err
	}
	prev, res, err := m.write(ctx, req.Kind, req.Name, "name", true, &logpb.Op{Op: &logpb.Op_ResourceDelete{ResourceDelete: &logpb.ResourceDelete{
		Kind: int32(req.Kind), Name: req.Name, ExpectedRevision: req.ExpectedRevision}}})
	if err != nil {
		return nil, err
	}
	return &metapb.DeleteResourceResponse{Prev: prev, Revision: res.Revision}, nil
}

// Get reads one resource; NotFound when there is none.
func (m *metadataService) Get(ctx context.Context, req *metapb.GetResourceRequest) (*metapb.GetResourceResponse, error) {
	if err := firstErr(checkKind("kind", req.Kind), checkResourceName("name", req.Name), checkConsistency(req.Consistency)); err != nil {
		return nil, err
	}
	mc, err := m.s.read(ctx, metapb.MetadataGroup, req.Consistency)
	if err != nil {
		return nil, err
	}
	rev := mc.Revision()
	st, err := mc.Resource(int32(req.Kind), req.Name)
	if err != nil {
		return nil, m.s.statusOf(err, false)
	}
	if st == nil {
		return nil, resultError(&logpb.Result{Code: logpb.Code_CODE_NOT_FOUND}, subject(req.Kind, req.Name), "name", 0)
	}
	r, err := fromStored(st)
	if err != nil {
		return nil, m.s.statusOf(err, false)
	}
	return &metapb.GetResourceResponse{Resource: r, Revision: rev}, nil
}

// listRetries bounds how often List re-reads a page to pair it with one
// exact revision while writes keep landing.
const listRetries = 3

// List pages through one kind in name order. The response's revision is
// read before the page, so a watch from revision + 1 misses nothing the
// page does not show (it may repeat a change the page already shows when
// a write landed during the read; a quiet group gives the exact revision).
func (m *metadataService) List(ctx context.Context, req *metapb.ListResourcesRequest) (*metapb.ListResourcesResponse, error) {
	if err := firstErr(checkKind("kind", req.Kind), checkConsistency(req.Consistency), checkLimit(req.Limit),
		checkStartAfter(req.StartAfter, metapb.MaxNameBytes), checkMaxBytes("name_prefix", req.NamePrefix, metapb.MaxNameBytes)); err != nil {
		return nil, err
	}
	limit := listLimit(req.Limit)
	mc, err := m.s.read(ctx, metapb.MetadataGroup, req.Consistency)
	if err != nil {
		return nil, err
	}
	var (
		rev  uint64
		page []*logpb.Resource
		more bool
	)
	for try := 0; ; try++ {
		rev = mc.Revision()
		page, more, err = mc.Resources(int32(req.Kind), req.NamePrefix, req.StartAfter, limit)
		if err != nil {
			return nil, m.s.statusOf(err, false)
		}
		if mc.Revision() == rev || try == listRetries {
			break
		}
	}
	out := &metapb.ListResourcesResponse{More: more, Revision: rev}
	for _, st := range page {
		r, err := fromStored(st)
		if err != nil {
			return nil, m.s.statusOf(err, false)
		}
		out.Resources = append(out.Resources, r)
	}
	if more && len(page) > 0 {
		out.NextStartAfter = page[len(page)-1].Name
	}
	return out, nil
}

func checkLimit(limit uint32) error {
	if limit > metapb.MaxListLimit {
		return invalid("limit", "%d, at most %d", limit, metapb.MaxListLimit)
	}
	return nil
}

func listLimit(limit uint32) int {
	if limit == 0 {
		return metapb.DefaultListLimit
	}
	return int(limit)
}
