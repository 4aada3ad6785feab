package sm

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/sm/logpb"
)

func groupRec(name string, nodes ...string) *logpb.GroupRecord {
	g := &logpb.GroupRecord{Name: name, Kind: "data"}
	for _, n := range nodes {
		g.Replicas = append(g.Replicas, &logpb.Replica{Node: n, Voter: true})
	}
	return g
}

// The directory: the cluster's first entry records the initial groups;
// every change of a group is compared on its configuration version; a
// member's state survives a put; every change raises the directory
// version; the upgrade's DirectoryInit applies only to a cluster without
// group records.
func TestDirectory(t *testing.T) {
	e := newEnv(t, KindMetadata)
	apply := e.applyNext()
	version := func() uint64 {
		d, err := e.m.Directory()
		if err != nil {
			t.Fatal(err)
		}
		return d.Version
	}
	r := apply(&logpb.Op{Op: &logpb.Op_ClusterInit{ClusterInit: &logpb.ClusterInit{ClusterId: "c", OffsetGroups: 1, DataGroups: 1,
		ReplicationFactor: 3, MetadataReplicationFactor: 3,
		Members: []*logpb.MemberPut{{Id: "n1", Addr: "a1"}, {Id: "n2", Addr: "a2"}, {Id: "n3", Addr: "a3"}},
		Groups:  []*logpb.GroupRecord{groupRec("data-0", "n1", "n2", "n3")}}}})
	if r[0].Code != logpb.Code_CODE_OK {
		t.Fatalf("cluster init: %v", r[0])
	}
	d, _ := e.m.Directory()
	if d.Version != 1 || len(d.Members) != 3 || len(d.Groups) != 1 || d.Groups[0].ConfVer != 1 || d.Cluster.ReplicationFactor != 3 {
		t.Fatalf("after init: %+v", d)
	}

	// A stale compare fails and changes nothing.
	put := func(g *logpb.GroupRecord, expect uint64) *logpb.Result {
		return apply(&logpb.Op{Op: &logpb.Op_GroupPut{GroupPut: &logpb.GroupPut{Group: g, ExpectedConfVer: expect}}})[0]
	}
	if r := put(groupRec("data-0", "n1", "n2", "n4"), 7); r.Code != logpb.Code_CODE_COMPARE_FAILED {
		t.Fatalf("stale put: got %v, want compare failed", r)
	}
	if v := version(); v != 1 {
		t.Fatalf("a failed put raised the version to %d", v)
	}
	if r := put(groupRec("data-0", "n1", "n2", "n3", "n4"), 1); r.Code != logpb.Code_CODE_OK {
		t.Fatalf("put: %v", r)
	}
	d, _ = e.m.Directory()
	if g := d.Group("data-0"); g.ConfVer != 2 || len(g.Replicas) != 4 || d.Version != 2 {
		t.Fatalf("after put: %v at version %d", g, d.Version)
	}
	// A new group must not exist yet; two replicas on one node are refused.
	if r := put(groupRec("data-0", "n1"), 0); r.Code != logpb.Code_CODE_COMPARE_FAILED {
		t.Fatalf("creating an existing group: %v", r)
	}
	if r := put(groupRec("data-1", "n1", "n1"), 0); r.Code != logpb.Code_CODE_INVALID {
		t.Fatalf("two replicas on one node: %v", r)
	}

	// Draining survives a put of the member's address.
	apply(&logpb.Op{Op: &logpb.Op_MemberSetState{MemberSetState: &logpb.MemberSetState{Id: "n3", State: logpb.MemberState_MEMBER_STATE_DRAINING}}})
	apply(&logpb.Op{Op: &logpb.Op_MemberPut{MemberPut: &logpb.MemberPut{Id: "n3", Addr: "a3b", Zone: "z"}}})
	d, _ = e.m.Directory()
	if m := d.Member("n3"); m.State != logpb.MemberState_MEMBER_STATE_DRAINING || m.Addr != "a3b" || m.Zone != "z" {
		t.Fatalf("member after drain and put: %v", m)
	}
	if d.Version != 4 {
		t.Fatalf("version after two member changes: %d, want 4", d.Version)
	}

	// DirectoryInit is a no-op once a directory exists.
	before, _ := e.m.Directory()
	apply(&logpb.Op{Op: &logpb.Op_DirectoryInit{DirectoryInit: &logpb.DirectoryInit{Groups: []*logpb.GroupRecord{groupRec("data-0", "n9")}}}})
	after, _ := e.m.Directory()
	if !proto.Equal(before.Groups[0], after.Groups[0]) || before.Version != after.Version {
		t.Fatalf("directory init over an existing directory changed it: %v -> %v", before.Groups, after.Groups)
	}
}

// A cluster created before the directory existed gets one, once.
func TestDirectoryInitUpgrade(t *testing.T) {
	e := newEnv(t, KindMetadata)
	results(t, e.m.Apply(entry(t, 1, &logpb.Op{Op: &logpb.Op_ClusterInit{ClusterInit: &logpb.ClusterInit{ClusterId: "c", OffsetGroups: 1, DataGroups: 1,
		Members: []*logpb.MemberPut{{Id: "n1", Addr: "a1"}}}}})))
	r := results(t, e.m.Apply(entry(t, 2, &logpb.Op{Op: &logpb.Op_DirectoryInit{DirectoryInit: &logpb.DirectoryInit{
		Groups: []*logpb.GroupRecord{groupRec("data-0", "n1"), groupRec("offset-0", "n1")}, ReplicationFactor: 3, MetadataReplicationFactor: 3}}})))
	if r[0].Code != logpb.Code_CODE_OK || r[0].Count != 2 {
		t.Fatalf("directory init: %v", r[0])
	}
	d, _ := e.m.Directory()
	if len(d.Groups) != 2 || d.Cluster.ReplicationFactor != 3 || d.Groups[1].ConfVer != 1 {
		t.Fatalf("after upgrade: %+v", d)
	}
}

// ownEverything records that a data or offset machine owns whatever is
// sent to it (as OwnershipInit{legacy} does through raft), for tests that
// apply ops directly.
func ownEverything(t testing.TB, m *Machine) {
	t.Helper()
	if !m.routed() {
		return
	}
	if err := m.space.Put(keyOwnership, mustMarshal(t, &logpb.Ownership{Legacy: true}), false); err != nil {
		t.Fatal(err)
	}
	if err := m.loadOwnership(m.space.Get); err != nil {
		t.Fatal(err)
	}
}

func mustMarshal(t testing.TB, msg proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
