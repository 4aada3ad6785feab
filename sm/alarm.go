package sm

import (
	"slices"

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

// alarmsPrefix starts every alarm record's key.
var alarmsPrefix = []byte{prefixCluster, 'a'}

func alarmPrefix(alarm string) []byte {
	return append(append(slices.Clip(alarmsPrefix), alarm...), 0)
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
		if err := a.write(alarmKey(s.Alarm, s.Member), s); err != nil {
			return nil, err
		}
		// Alarms travel in the directory (state.Directory): a new version
		// reaches the nodes that do not host metadata-0 too.
		return &logpb.Result{}, a.bumpDirectory()
	}
	var r *logpb.Result
	var err error
	if s.Member != "" {
		// Exactly this member's record (a prefix would take n10 with n1).
		k := alarmKey(s.Alarm, s.Member)
		r, err = a.deleteRange(k, append(k, 0))
	} else {
		r, err = a.deletePrefix(alarmPrefix(s.Alarm))
	}
	if err != nil || r.Count == 0 {
		return r, err
	}
	return r, a.bumpDirectory()
}
