package sm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// The change log. Every change to a watched space (KV keys, resources,
// wills) is stored under (revision, n) in the same batch as the change, so
// the log is exactly as durable and as ordered as the state, survives
// restarts and travels in snapshots. Entries below the compacted revision
// are gone; the leader compacts (EventsCompact) by its retention policy.

// ErrCompacted is returned when events below the compacted revision are
// asked for.
var ErrCompacted = state.ErrCompacted

// EventRecord is one logged change.
type EventRecord = state.EventRecord

// Cursor is a position in the change log: the next event to read.
type Cursor = state.Cursor

// Events returns up to max events from the cursor on, in order, and the
// cursor after them. It fails with ErrCompacted (wrapping the compacted
// revision in the message) when the cursor is below the compacted
// revision.
func (m *Machine) Events(from Cursor, max int) ([]EventRecord, Cursor, error) {
	var out []EventRecord
	next := from
	err := m.read(func() error {
		sn := m.db.NewSnapshot()
		defer sn.Close()
		c, err := storedU64(sn.Get(m.space, keyCompact))
		if err != nil {
			return err
		}
		if from.Revision < c {
			return fmt.Errorf("%w: revision %d is below the compacted revision %d", ErrCompacted, from.Revision, c)
		}
		var derr error
		serr := sn.Scan(m.space, eventKey(from.Revision, from.N), []byte{prefixEvent + 1}, func(k, v []byte) bool {
			if len(out) >= max {
				return false
			}
			if len(k) != 13 {
				derr = errBadKey
				return false
			}
			ev := &logpb.Event{}
			if derr = proto.Unmarshal(v, ev); derr != nil {
				return false
			}
			rec := EventRecord{Revision: binary.BigEndian.Uint64(k[1:9]), N: binary.BigEndian.Uint32(k[9:13]), Event: ev}
			out = append(out, rec)
			next = Cursor{Revision: rec.Revision, N: rec.N + 1}
			return true
		})
		if serr != nil {
			return serr
		}
		return derr
	})
	return out, next, err
}

// CompactRevision returns the revision below which the change log is gone.
func (m *Machine) CompactRevision() (uint64, error) {
	var c uint64
	err := m.read(func() error {
		var err error
		c, err = storedU64(m.space.Get(keyCompact))
		return err
	})
	return c, err
}

// OldestEvent returns the first logged event, if any.
func (m *Machine) OldestEvent() (*EventRecord, error) {
	evs, _, err := m.Events(Cursor{}, 1)
	if errors.Is(err, ErrCompacted) {
		c, cerr := m.CompactRevision()
		if cerr != nil {
			return nil, cerr
		}
		evs, _, err = m.Events(Cursor{Revision: c}, 1)
	}
	if err != nil || len(evs) == 0 {
		return nil, err
	}
	return &evs[0], nil
}

// EventAt returns the first event at or after revision, if any.
func (m *Machine) EventAt(revision uint64) (*EventRecord, error) {
	evs, _, err := m.Events(Cursor{Revision: revision}, 1)
	if err != nil || len(evs) == 0 {
		return nil, err
	}
	return &evs[0], nil
}

// Changed returns a channel closed at the next apply (or restore); a
// watcher reads what is new, then waits on a fresh channel.
func (m *Machine) Changed() <-chan struct{} {
	m.waitMu.Lock()
	defer m.waitMu.Unlock()
	return m.applied
}
