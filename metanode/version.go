package metanode

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/rpc/transport"
	"github.com/metamq/meta/rpc/transport/raftpb"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
)

// The cluster version on a node (sm/version.go says what levels are).
// While the cluster version is below its own level, metadata-0's leader
// asks every member for its feature level (metanode.feature-level/v1; a
// node of a release before levels does not know the call: the base level)
// every ReconcileInterval, and raises the cluster version through raft
// once every member answers a higher one; a member that does not answer
// keeps it where it is (it may be restarting on either release). Every
// node follows the cluster version in the directory. A node proposes only operations the cluster version allows:
// the rest are refused before they reach raft with CLUSTER_VERSION, both
// on the node a client called (before forwarding: its leader may run the
// previous release) and on the leader (whose view decides). A node's view
// can only lag the recorded version, which makes it refuse more, never
// less. A node whose level is below the recorded cluster version refuses
// to start, and a joining node below it is refused its cluster's
// information (peer.go).

// ErrClusterVersion is matched (errors.Is) by every ClusterVersionError.
var ErrClusterVersion error = &sentinel{"metanode: cluster version", metapb.ReasonClusterVersion}

// ClusterVersionError refuses an operation that needs a newer cluster
// version: FailedPrecondition with reason CLUSTER_VERSION on the public
// API, naming both versions.
type ClusterVersionError struct {
	Op       string
	Cluster  uint32
	Required uint32
	// Joining is the feature level of a node refused to join (Op "join").
	Joining uint32
}

func (e *ClusterVersionError) Error() string {
	if e.Op == "join" {
		return fmt.Sprintf("metanode: the cluster version is %d and the joining node's feature level is %d: a node below the cluster version cannot join; run a release of feature level %d or newer",
			e.Cluster, e.Joining, e.Required)
	}
	return fmt.Sprintf("metanode: %s needs cluster version %d; the cluster version is %d (a member runs an older release: upgrade every member first)",
		e.Op, e.Required, e.Cluster)
}

func (e *ClusterVersionError) Is(target error) bool { return target == ErrClusterVersion }
func (e *ClusterVersionError) Reason() string       { return metapb.ReasonClusterVersion }
func (e *ClusterVersionError) Metadata() map[string]string {
	return map[string]string{metapb.MetaClusterVersion: strconv.FormatUint(uint64(e.Cluster), 10),
		metapb.MetaRequiredVersion: strconv.FormatUint(uint64(e.Required), 10)}
}

// featureLevel is the level this node reports.
func (c Config) featureLevel() uint32 {
	if c.FeatureLevel == 0 {
		return sm.FeatureLevel
	}
	return c.FeatureLevel
}

// FeatureLevel is the feature level this node runs at and reports.
func (n *Node) FeatureLevel() uint32 { return n.cfg.featureLevel() }

// ClusterVersion is the cluster version as this node last saw it: in the
// directory it follows or, until it has fetched one (just started), in
// its stored replica of metadata-0. A node restarted mid-upgrade reported
// the base level there, below what its cluster had (a chaos upgrade from
// a real older release saw the version go down).
func (n *Node) ClusterVersion() uint32 {
	d := n.Directory()
	if d.Version == 0 {
		if v := n.storedLevel.Load(); v > 0 {
			return v
		}
	}
	return d.Level()
}

// admit refuses op, before it is proposed, when the cluster version does
// not allow it or a NOSPACE alarm refuses writes that take space. Both the
// node a client calls and the leader that proposes (a forwarded op too)
// ask, from the directory each follows.
func (e *env) admit(op *logpb.Op) error {
	if err := e.allowed(op); err != nil {
		return err
	}
	if plantedNoSpaceLate() {
		return nil // checked after the write instead (proposeLocal)
	}
	return e.checkSpace(op)
}

// allowed refuses op when the cluster version does not allow it. The
// cluster version's own raise is the controller's to decide (every member
// reports the level it raises to), so it is not checked here.
func (e *env) allowed(op *logpb.Op) error {
	if _, ok := op.Op.(*logpb.Op_ClusterVersionSet); ok {
		return nil
	}
	need := sm.OpLevel(op)
	if need <= sm.BaseLevel {
		return nil
	}
	have := e.directory().Level()
	if e.clusterVersion != nil {
		have = e.clusterVersion()
	}
	if plantedOwnLevel() {
		have = e.cfg.featureLevel() // this node's release, not the cluster's
	}
	if have < need {
		return &ClusterVersionError{Op: sm.OpName(op), Cluster: have, Required: need}
	}
	return nil
}

// checkStoredVersion refuses to start a node whose feature level is below
// the cluster version its replica of metadata-0 recorded: it could not
// apply what the cluster proposes now (a downgrade below the cluster
// version).
func (n *Node) checkStoredVersion() error {
	md := n.hosted(metapb.MetadataGroup)
	if md == nil {
		return nil
	}
	d, err := md.fsm.Directory()
	if err != nil {
		return err
	}
	if d.Version > 0 {
		n.storedLevel.Store(d.Level())
	}
	return n.checkLevel(d.Level(), "its stored metadata-0 replica")
}

// Failed receives the reason this node cannot go on running, at most
// once: a cluster version above its feature level, seen after it started
// (its stored metadata-0 replica may not have applied the raise yet when
// it started, or it hosts no replica of metadata-0). The caller closes
// the node and exits with it.
func (n *Node) Failed() <-chan error { return n.failed }

// fail reports err on Failed (the first one only).
func (n *Node) fail(err error) {
	select {
	case n.failed <- err:
		n.log.Error("this node cannot go on running", "err", err)
	default:
	}
}

// checkLevel refuses a cluster version above this node's level.
func (n *Node) checkLevel(cluster uint32, where string) error {
	if lvl := n.cfg.featureLevel(); lvl < cluster {
		return fmt.Errorf("%w %d (%s) is above this node's feature level %d: a downgrade below the cluster version is refused; run a release of feature level %d or newer",
			ErrClusterVersion, cluster, where, lvl, cluster)
	}
	return nil
}

const callFeatureLevel = "metanode.feature-level/v1"

// serveFeatureLevel answers metadata-0's leader with this node's level.
func (n *Node) serveFeatureLevel(context.Context, *raftpb.FeatureLevelCall) ([]byte, error) {
	return proto.Marshal(&raftpb.FeatureLevelAnswer{Level: n.cfg.featureLevel()})
}

// versionLoop runs while this node leads metadata-0: it raises the
// cluster version to the level every member runs, up to this node's own.
func (n *Node) versionLoop(ctx context.Context) {
	md := n.hosted(metapb.MetadataGroup)
	for {
		if err := n.raiseClusterVersion(ctx, md); err != nil && ctx.Err() == nil {
			n.log.Debug("cluster version not raised", "err", err)
		}
		d := n.cfg.ReconcileInterval
		select {
		case <-ctx.Done():
			return
		case <-time.After(d/2 + rand.N(d)):
		}
	}
}

// raiseClusterVersion asks every member for its level and raises the
// cluster version to the lowest answer when that is higher.
func (n *Node) raiseClusterVersion(ctx context.Context, md *group) error {
	d, err := md.fsm.Directory()
	if err != nil || d.Cluster == nil || len(d.Members) == 0 {
		return err
	}
	level := n.cfg.featureLevel()
	if d.Level() >= level {
		return nil
	}
	payload, err := proto.Marshal(&raftpb.FeatureLevelCall{})
	if err != nil {
		return err
	}
	for _, m := range d.Members {
		if m.Id == n.id {
			continue
		}
		l, err := n.askFeatureLevel(ctx, m.Addr, payload)
		if err != nil {
			return fmt.Errorf("member %s: %w", m.Id, err)
		}
		level = min(level, l)
	}
	if level <= d.Level() {
		return nil
	}
	res, err := md.proposeLocal(ctx, &logpb.Op{Op: &logpb.Op_ClusterVersionSet{ClusterVersionSet: &logpb.ClusterVersionSet{Level: level}}})
	if err == nil && res.Code != logpb.Code_CODE_OK {
		err = fmt.Errorf("%w: %s", ErrInvalid, res.Message)
	}
	n.log.Info("cluster version raised: every member runs this feature level", "from", d.Level(), "to", level, "err", err)
	return err
}

// askFeatureLevel asks the node at addr for its feature level. A node
// that does not know the call runs a release before levels: the base
// level. (Its refusal is INVALID_ARGUMENT from a release before the
// typed reason, transport.ErrUnknownCall from later ones.)
func (n *Node) askFeatureLevel(ctx context.Context, addr string, payload []byte) (uint32, error) {
	cctx, cancel := context.WithTimeout(ctx, n.t.peerCall)
	defer cancel()
	out, err := n.trans.Call(cctx, addr, callFeatureLevel, payload)
	switch {
	case errors.Is(err, transport.ErrUnknownCall), metapb.ReasonOf(err) == metapb.ReasonInvalidArgument:
		return sm.BaseLevel, nil
	case err != nil:
		return 0, err
	}
	ans := &raftpb.FeatureLevelAnswer{}
	if err := proto.Unmarshal(out, ans); err != nil {
		return 0, err
	}
	return max(ans.Level, sm.BaseLevel), nil
}
