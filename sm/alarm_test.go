package sm

import (
	"testing"

	"github.com/metamq/meta/sm/logpb"
)

func alarmOp(member string, active bool) *logpb.Op {
	return &logpb.Op{Op: &logpb.Op_AlarmSet{AlarmSet: &logpb.AlarmSet{Member: member, Alarm: AlarmNoSpace, Active: active, Message: "full"}}}
}

// Alarms are raised per member and cleared for one member exactly (not
// every member whose id starts the same) or for all.
func TestAlarmSetRaisesAndClears(t *testing.T) {
	e := newEnv(t, KindMetadata)
	next := e.applyNext()
	members := func() []string {
		d, err := e.m.Directory()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range d.Alarms {
			out = append(out, a.Member)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		op   *logpb.Op
		code logpb.Code
		want []string
	}{
		{"raise n1", alarmOp("n1", true), logpb.Code_CODE_OK, []string{"n1"}},
		{"raise n10", alarmOp("n10", true), logpb.Code_CODE_OK, []string{"n1", "n10"}},
		{"raise without member", alarmOp("", true), logpb.Code_CODE_INVALID, []string{"n1", "n10"}},
		{"clear n1 only", alarmOp("n1", false), logpb.Code_CODE_OK, []string{"n10"}},
		{"clear n1 again", alarmOp("n1", false), logpb.Code_CODE_NOT_FOUND, []string{"n10"}},
		{"clear all", alarmOp("", false), logpb.Code_CODE_OK, nil},
	} {
		if r := next(tc.op)[0]; r.Code != tc.code {
			t.Fatalf("%s: code %v (%s), want %v", tc.name, r.Code, r.Message, tc.code)
		}
		if got := members(); len(got) != len(tc.want) || (len(got) > 0 && got[0] != tc.want[0]) {
			t.Fatalf("%s: alarms of %v, want %v", tc.name, got, tc.want)
		}
	}
}
