package sm

import (
	"github.com/metamq/meta/sm/logpb"
)

// Alarms. An alarm is a record in metadata-0, raised and cleared by
// AlarmSet entries, so every node learns it from the same log: a member
// whose storage passed its quota raises NOSPACE, and every node then
// refuses the writes that take space (metanode/alarm.go) until an admin
// clears it, as etcd's NOSPACE alarm does. The record is keyed by alarm
// and member; clearing with an empty member clears the alarm everywhere.

// AlarmNoSpace is the alarm a member raises when its storage passes its
// quota or its disk runs out of free space.
const AlarmNoSpace = "NOSPACE"

func alarmPrefix(alarm string) []byte {
	return append(append([]byte{prefixCluster, 'a'}, alarm...), 0)
}

func alarmKey(alarm, member string) []byte { return append(alarmPrefix(alarm), member...) }

func (a *applier) alarmSet(s *logpb.AlarmSet) (*logpb.Result, error) {
	if s.Alarm == "" {
		return invalid("alarm must be set"), nil
	}
	if s.Active {
		if s.Member == "" {
			return invalid("member must be set to raise an alarm"), nil
		}
		a.bump()
		return &logpb.Result{}, a.write(alarmKey(s.Alarm, s.Member), s)
	}
	if s.Member != "" {
		// Exactly this member's record (a prefix would take n10 with n1).
		k := alarmKey(s.Alarm, s.Member)
		return a.deleteRange(k, append(k, 0))
	}
	return a.deletePrefix(alarmPrefix(s.Alarm))
}

// Alarms returns the active alarms recorded in this replica (of
// metadata-0), by alarm then member.
func (m *Machine) Alarms() ([]*logpb.AlarmSet, error) {
	var out []*logpb.AlarmSet
	err := m.read(func() error {
		p := []byte{prefixCluster, 'a'}
		var err error
		out, err = decodeAll(func(fn func(k, v []byte) bool) error {
			return m.space.Scan(p, prefixEnd(p), fn)
		}, func() *logpb.AlarmSet { return &logpb.AlarmSet{} })
		return err
	})
	return out, err
}
