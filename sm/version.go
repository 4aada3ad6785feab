package sm

import (
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/metamq/meta/sm/logpb"
)

// Feature levels and the cluster version (issue 14's upgrades). A
// release's feature level is a small integer that rises whenever a release
// adds a log-entry operation, or a field of one, that an older replica
// would not apply as a newer one does: an older replica halts on an
// operation it does not know (halt.go) and silently ignores a field it
// does not know. Each operation needs a level (opLevels); the cluster
// version, recorded in metadata-0, is the lowest level of the members,
// raised through raft (ClusterVersionSet) once every member reports a
// higher one, and never lowered. A leader proposes only what the cluster
// version allows (metanode refuses the rest before proposing, with
// CLUSTER_VERSION), so during a rolling upgrade no replica meets an entry
// it cannot apply; a binary whose level is below the recorded cluster
// version refuses to start (it could not apply what the cluster now
// proposes).
//
// Levels:
//
//	1 (BaseLevel)  every release before feature levels (their members report
//	               none): operations 1-33 as of the scale-out and ownership
//	               releases. A rolling upgrade starts from the release just
//	               before KVPuts (cmd/metanode/upgrade_test.go).
//	2              KVPuts (34), KVTxn (35), HashCheck (40; older releases
//	               without it exist among the base level's), AlarmSet (41),
//	               ClusterVersionSet (42).
//	3              splits: GroupsPut (43), RangeRelease (44), RangeIngest
//	               (45), RangeAcquire (46), RangeDrop (47), RangeTrack
//	               (48), RangeAbort (49), RangeReset (50), with
//	               RangeIngest's replay, RangeDrop's steps, RangeRelease's
//	               base and the sum of a tracked range's changes (no
//	               release has level 3 without them: splits are
//	               unreleased, so what they add stays at level 3).
const (
	BaseLevel    uint32 = 1
	FeatureLevel uint32 = 3
)

// opLevels is the level each operation of logpb.Op needs, by its oneof
// field number. Every operation must be listed (a test checks): one
// missing is taken to need this release's FeatureLevel.
var opLevels = map[protoreflect.FieldNumber]uint32{
	1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1, 9: 1, 10: 1,
	11: 1, 12: 1, 13: 1, 14: 1, 15: 1, 16: 1, 17: 1, 18: 1, 19: 1, 20: 1,
	21: 1, 22: 1, 23: 1, 24: 1, 25: 1, 26: 1, 27: 1, 28: 1, 29: 1, 30: 1,
	31: 1, 32: 1, 33: 1,
	34: 2, // KVPuts
	35: 2, // KVTxn
	40: 2, // HashCheck
	41: 2, // AlarmSet
	42: 2, // ClusterVersionSet
	43: 3, // GroupsPut
	44: 3, // RangeRelease
	45: 3, // RangeIngest
	46: 3, // RangeAcquire
	47: 3, // RangeDrop
	48: 3, // RangeTrack
	49: 3, // RangeAbort
	50: 3, // RangeReset
}

// opField is the oneof field of op that is set, or nil.
func opField(op *logpb.Op) protoreflect.FieldDescriptor {
	m := op.ProtoReflect()
	return m.WhichOneof(m.Descriptor().Oneofs().ByName("op"))
}

// OpLevel is the feature level every replica must have for op to be
// proposed. (A field added to an existing operation that older replicas
// would ignore is checked here too, by the release that adds it.)
func OpLevel(op *logpb.Op) uint32 {
	f := opField(op)
	if f == nil {
		return BaseLevel
	}
	if l, ok := opLevels[f.Number()]; ok {
		return l
	}
	return FeatureLevel
}

// OpName is the name of op's operation, for messages.
func OpName(op *logpb.Op) string {
	if f := opField(op); f != nil {
		return string(f.Name())
	}
	return "none"
}

// clusterVersionSet raises the cluster version; never lowers it.
func (a *applier) clusterVersionSet(s *logpb.ClusterVersionSet) (*logpb.Result, error) {
	if s.Level == 0 {
		return invalid("cluster version: level required"), nil
	}
	cur, err := storedU64(a.b.Get(a.m.space, keyClusterVersion))
	if err != nil {
		return nil, err
	}
	if uint64(s.Level) <= cur {
		return &logpb.Result{Message: fmt.Sprintf("cluster version is %d already", cur)}, nil
	}
	if s.Level > FeatureLevel {
		// The controller raises it only to a level every member reports;
		// this replica's binary below it is one started against that
		// (it refuses to start once it sees the record).
		a.m.log.Error("cluster version raised above this release's feature level: run a newer release on this node", "cluster_version", s.Level, "feature_level", FeatureLevel)
	}
	a.bump()
	a.b.Put(a.m.space, keyClusterVersion, binary.BigEndian.AppendUint64(nil, uint64(s.Level)))
	return &logpb.Result{}, a.bumpDirectory()
}
