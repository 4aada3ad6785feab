package state

import (
	"context"
	"errors"

	"github.com/metamq/meta/sm/logpb"
)

// ErrCompacted is returned when events below the compacted revision are
// asked for.
var ErrCompacted = errors.New("sm: revision compacted")

// OwnershipError refuses a read of a routing key the replica's group does
// not serve: Moving when its range is changing hands (or the group has not
// recorded what it owns yet), else the key belongs to another group.
type OwnershipError struct {
	Group  string
	Moving bool
}

func (e *OwnershipError) Error() string {
	if e.Moving {
		return "sm: " + e.Group + ": this key's range is changing hands"
	}
	return "sm: " + e.Group + " does not own this key's range"
}

// Entry is one key-value pair of a listing.
type Entry struct {
	Key []byte
	KV  *logpb.KV
}

// OffsetKey names one partition of one consumer group.
type OffsetKey struct {
	Group, Topic string
	Partition    int32
}

// EventRecord is one logged change.
type EventRecord struct {
	Revision uint64
	N        uint32
	Event    *logpb.Event
}

// Cursor is a position in the change log: the next event to read.
type Cursor struct {
	Revision uint64
	N        uint32
}

// RetainedEntry is one retained message of a listing.
type RetainedEntry struct {
	Topic string
	Msg   *logpb.Retained
}

// Hash digests a group's state at an applied index.
type Hash struct {
	Index, Revision, Hash, Keys uint64
}

// Directory is metadata-0's directory at one point: its version (rising
// with every change of members or groups), the cluster record, the
// members and every group's record.
type Directory struct {
	Version uint64
	// ClusterVersion is the recorded cluster version (sm/version.go); 0
	// when never raised (use Level).
	ClusterVersion uint32
	Cluster        *logpb.ClusterInit
	Members        []*logpb.MemberPut
	Groups         []*logpb.GroupRecord
	// Alarms are the alarms raised (sm/alarm.go), by alarm then member.
	Alarms []*logpb.AlarmSet
}

// Group returns the record of the named group, or nil.
func (d *Directory) Group(name string) *logpb.GroupRecord {
	for _, g := range d.Groups {
		if g.Name == name {
			return g
		}
	}
	return nil
}

// Level is the cluster version: the recorded one, or 1 (the base level)
// when none is.
func (d *Directory) Level() uint32 { return max(d.ClusterVersion, 1) }

// Member returns the named member, or nil.
func (d *Directory) Member(id string) *logpb.MemberPut {
	for _, m := range d.Members {
		if m.Id == id {
			return m
		}
	}
	return nil
}

// Fleet is metadata-0's brokers and connector assignments (in connector
// order) as of one revision.
type Fleet struct {
	Revision    uint64
	Brokers     []*logpb.Broker
	Assignments []*logpb.ConnectorAssignment
}

// Reader reads one group's state as this replica has applied it. Each call
// reads one consistent view.
type Reader interface {
	AppliedIndex() uint64
	Revision() uint64
	// Changed is closed at the next apply (close-and-replace).
	Changed() <-chan struct{}
	WaitApplied(ctx context.Context, index uint64) error
	Hash() (Hash, error)

	// KV and leases (data groups).
	Get(key []byte) (*logpb.KV, error)
	// GetVersioned is Get that also returns, in the same view as the data,
	// the version of the owned range holding key (0: no ranges recorded).
	GetVersioned(key []byte) (*logpb.KV, uint64, error)
	// GetMany reads keys in one view (out[i] nil when keys[i] is absent).
	GetMany(keys [][]byte) ([]*logpb.KV, error)
	List(prefix, startAfter []byte, limit int, keysOnly bool) (out []Entry, more bool, err error)
	Lease(id int64) (*logpb.Lease, error)
	LeaseKeys(id int64, limit int) ([][]byte, error)

	// Offsets (offset groups).
	Offsets(keys []OffsetKey) ([]*logpb.Offset, error)

	// MQTT (data groups).
	Session(clientID string) (*logpb.Session, error)
	Sessions(startAfter string, limit int, brokerID string) ([]*logpb.Session, bool, error)
	Will(clientID string) (*logpb.Will, error)
	DueWills(now int64, startAfter string, limit int) ([]*logpb.Will, bool, error)
	Retained(topic string) (*logpb.Retained, error)
	RetainedList(prefix, startAfter string, limit int, match func(topic string) bool) ([]RetainedEntry, bool, error)

	// Metadata (metadata-0).
	Cluster() (*logpb.ClusterInit, []*logpb.MemberPut, error)
	Directory() (*Directory, error)
	Resource(kind int32, name string) (*logpb.Resource, error)
	Resources(kind int32, namePrefix, startAfter string, limit int) ([]*logpb.Resource, bool, error)
	Broker(id string) (*logpb.Broker, error)
	Brokers() ([]*logpb.Broker, error)
	Assignment(connector string) (*logpb.ConnectorAssignment, error)
	Assignments(brokerID string) ([]*logpb.ConnectorAssignment, error)
	// Fleet reads the brokers and every assignment together, at one
	// revision (two calls above may straddle an apply: a broker declared
	// down beside the connectors it held until then).
	Fleet() (*Fleet, error)

	// The change log (watches).
	Events(from Cursor, max int) ([]EventRecord, Cursor, error)
	CompactRevision() (uint64, error)
}
