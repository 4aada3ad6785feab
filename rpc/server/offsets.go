package server

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

func checkName(field, v string) error {
	return checkRequired(field, v, metapb.MaxNameBytes)
}

func checkPartition(field string, tp *metapb.TopicPartition) error {
	if tp == nil {
		return invalid(field, "must be set")
	}
	return firstErr(checkName(field+".group", tp.Group), checkName(field+".topic", tp.Topic),
		nonNegative(field+".partition", int64(tp.Partition)))
}

func nonNegative(field string, v int64) error {
	if v < 0 {
		return invalid(field, "%d, must be >= 0", v)
	}
	return nil
}

func (s *Server) offsetGroup(consumerGroup string) (string, error) {
	r, err := s.router()
	if err != nil {
		return "", err
	}
	return r.OffsetGroup(consumerGroup), nil
}

// Commit splits the batch by offset group; each part is one op (one raft
// entry's worth, applied atomically); parts run concurrently.
func (s *Server) Commit(ctx context.Context, req *metapb.CommitOffsetsRequest) (*metapb.CommitOffsetsResponse, error) {
	if err := checkBatchLen("offsets", len(req.Offsets), metapb.MaxBatchEntries); err != nil {
		return nil, err
	}
	total := 0
	for i, o := range req.Offsets {
		f := fmt.Sprintf("offsets[%d]", i)
		if o == nil {
			return nil, invalid(f, "must be set")
		}
		if err := firstErr(checkName(f+".group", o.Group), checkName(f+".topic", o.Topic),
			nonNegative(f+".partition", int64(o.Partition)), nonNegative(f+".offset", o.Offset)); err != nil {
			return nil, err
		}
		if err := checkMaxBytes(f+".metadata", o.Metadata, metapb.MaxMetadataBytes); err != nil {
			return nil, err
		}
		total += len(o.Group) + len(o.Topic) + len(o.Metadata) + 16
	}
	if total > metapb.MaxBatchBytes {
		return nil, invalid("offsets", "%d bytes, at most %d", total, metapb.MaxBatchBytes)
	}
	parts, err := s.proposeParts(ctx, len(req.Offsets), func(r *metapb.Router, i int) string { return r.OffsetGroup(req.Offsets[i].Group) },
		func(_ string, idx []int) *logpb.Op {
			entries := make([]*logpb.OffsetEntry, len(idx))
			for j, i := range idx {
				o := req.Offsets[i]
				entries[j] = &logpb.OffsetEntry{Group: o.Group, Topic: o.Topic, Partition: o.Partition, Offset: o.Offset, Metadata: o.Metadata}
			}
			return &logpb.Op{Op: &logpb.Op_OffsetCommit{OffsetCommit: &logpb.OffsetCommit{Entries: entries}}}
		})
	if err != nil {
		return nil, err
	}
	// Each part is atomic on its own: a part refused is reported, the
	// others applied, as batchError says.
	for _, p := range parts {
		if p.err == nil && p.res.Code != logpb.Code_CODE_OK {
			p.err = invalidArgument("offsets", p.res.Message)
		}
	}
	if err := s.batchError(partErrs(parts)); err != nil {
		return nil, err
	}
	revs := make([]uint64, len(req.Offsets))
	for _, p := range parts {
		for _, i := range p.idx {
			revs[i] = p.res.Revision
		}
	}
	return &metapb.CommitOffsetsResponse{Revisions: revs, Groups: uint32(partGroups(parts))}, nil
}

// batchError reports the worst error of a batch's parts: if any part may
// have been applied while another failed, the whole call's outcome is
// unknown; if every failed part failed definitely (and none succeeded),
// the call failed definitely.
func (s *Server) batchError(errs []error) error {
	var first error
	failed := 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		failed++
		mapped := s.statusOf(err, true)
		if first == nil {
			first = mapped
		}
		if metapb.ClassOf(metapb.ReasonOf(mapped)) == metapb.ClassUnknown {
			return mapped
		}
	}
	if failed > 0 && failed < len(errs) {
		// Some parts applied, some definitely not: report unknown so the
		// caller does not take the batch as not applied.
		return coded(metapb.ReasonOutcomeUnknown, nil, "some parts of the batch were applied, others not: "+first.Error())
	}
	return first
}

// Fetch reads committed offsets, one linearizable read per offset group
// touched.
func (s *Server) Fetch(ctx context.Context, req *metapb.FetchOffsetsRequest) (*metapb.FetchOffsetsResponse, error) {
	if err := checkBatchLen("partitions", len(req.Partitions), metapb.MaxBatchEntries); err != nil {
		return nil, err
	}
	if err := checkConsistency(req.Consistency); err != nil {
		return nil, err
	}
	for i, tp := range req.Partitions {
		if err := checkPartition(fmt.Sprintf("partitions[%d]", i), tp); err != nil {
			return nil, err
		}
	}
	// One linearizable read per offset group touched, and one consistent
	// view per group: each consumer group's part is atomic.
	byGroup := map[string][]int{}
	var order []string
	for i, tp := range req.Partitions {
		g, err := s.offsetGroup(tp.Group)
		if err != nil {
			return nil, err
		}
		if _, ok := byGroup[g]; !ok {
			order = append(order, g)
		}
		byGroup[g] = append(byGroup[g], i)
	}
	out := &metapb.FetchOffsetsResponse{Offsets: make([]*metapb.OffsetValue, len(req.Partitions))}
	for _, g := range order {
		idx := byGroup[g]
		sub := &metapb.FetchOffsetsRequest{Consistency: req.Consistency, Partitions: make([]*metapb.TopicPartition, len(idx))}
		for j, i := range idx {
			sub.Partitions[j] = req.Partitions[i]
		}
		err := s.inGroup(ctx, g, req.Consistency, sub,
			func(m state.Reader) error {
				keys := make([]state.OffsetKey, len(idx))
				for j, i := range idx {
					tp := req.Partitions[i]
					keys[j] = state.OffsetKey{Group: tp.Group, Topic: tp.Topic, Partition: tp.Partition}
				}
				vals, err := m.Offsets(keys)
				if err != nil {
					return s.statusOf(err, false)
				}
				for j, i := range idx {
					v := &metapb.OffsetValue{Partition: req.Partitions[i], Offset: -1}
					if o := vals[j]; o != nil {
						v.Found, v.Offset, v.Metadata, v.ModRevision = true, o.Offset, o.Metadata, o.ModRevision
					}
					out.Offsets[i] = v
				}
				return nil
			},
			func(resp proto.Message) error {
				vals := resp.(*metapb.FetchOffsetsResponse).Offsets
				if len(vals) != len(idx) {
					return status.Errorf(codes.Unavailable, "%s answered %d offsets for %d partitions", g, len(vals), len(idx))
				}
				for j, i := range idx {
					out.Offsets[i] = vals[j]
				}
				return nil
			})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// DeleteGroup removes all offsets of a consumer group atomically.
func (s *Server) DeleteGroup(ctx context.Context, req *metapb.DeleteGroupRequest) (*metapb.DeleteGroupResponse, error) {
	if err := checkName("group", req.Group); err != nil {
		return nil, err
	}
	g, err := s.offsetGroup(req.Group)
	if err != nil {
		return nil, err
	}
	res, err := s.propose(ctx, g, &logpb.Op{Op: &logpb.Op_OffsetDeleteGroup{OffsetDeleteGroup: &logpb.OffsetDeleteGroup{Group: req.Group}}})
	if err != nil {
		return nil, err
	}
	return &metapb.DeleteGroupResponse{Header: s.header(g, nil, res.Revision), Deleted: res.Count}, nil
}
