package metanode_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/verify/poll"
)

// A node past its quota raises the NOSPACE alarm through metadata-0:
// every node then refuses puts with the documented definite error
// (NOSPACE, ResourceExhausted: not applied), while reads and deletes go
// on. Disarming while still past the quota brings the alarm back;
// once space is freed (here: the quota raised), a disarm lets puts
// through again. Four nodes and three replicas: a node that hosts no
// replica of metadata-0 sees the alarm too (in the directory it follows)
// and refuses a put sent to it.
func TestQuotaRaisesNoSpaceAlarm(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{Nodes: 4, DataGroups: 1, Configure: func(cfg *metanode.Config) {
		cfg.ReportInterval = 100 * time.Millisecond
		cfg.ReplicationFactor, cfg.MetadataReplicationFactor = 3, 3
	}})
	cl := c.Client("")
	put(t, cl, "seed", "v")
	ids := c.IDs()
	var outside string // a node without a replica of metadata-0
	poll.ForTrue(t, "a node without a replica of metadata-0", 60*time.Second, func() bool {
		for _, id := range ids {
			if c.Running(id).FSM(metapb.MetadataGroup) == nil {
				outside = id
				return true
			}
		}
		return false
	})
	full := ids[0]
	if full == outside {
		full = ids[1]
	}
	c.Running(full).SetQuotaBytesForTest(c.Running(full).StoredBytesForTest() + 1<<20)

	value := strings.Repeat("x", 64<<10)
	var refused error
	acked := []string{}
	for i := range 2000 {
		k := fmt.Sprintf("k%04d", i)
		_, err := cl.Put(ctxT(t, 20*time.Second), &metapb.PutRequest{Key: []byte(k), Value: []byte(value)})
		if err != nil {
			refused = err
			break
		}
		acked = append(acked, k)
	}
	if refused == nil {
		t.Fatalf("2000 puts of 64 KiB past a 1 MiB quota: none refused")
	}
	if status.Code(refused) != codes.ResourceExhausted || reasonOf(refused) != metapb.ReasonNoSpace ||
		metapb.ClassOf(reasonOf(refused)) != metapb.ClassFinal {
		t.Fatalf("put past the quota: %v (code %v, reason %q), want ResourceExhausted NOSPACE, definitely not applied",
			refused, status.Code(refused), reasonOf(refused))
	}
	t.Logf("refused after %d puts: %v", len(acked), refused)

	// Every node sees the alarm, raised by the full one.
	for _, id := range ids {
		poll.ForTrue(t, id+" listing the NOSPACE alarm of "+full, 30*time.Second, func() bool {
			alarms := c.Running(id).Alarms()
			return len(alarms) == 1 && alarms[0].Alarm == sm.AlarmNoSpace && alarms[0].Member == full
		})
	}
	// The node outside metadata-0 refuses a put sent to it, with the same
	// definite error.
	poll.For(t, outside+" refusing a put", 30*time.Second, func() error {
		_, err := c.Client(outside).Put(ctxT(t, 20*time.Second), &metapb.PutRequest{Key: []byte("outside"), Value: []byte(value)})
		return poll.Check(reasonOf(err) == metapb.ReasonNoSpace, fmt.Sprintf("put through %s: %v, want NOSPACE", outside, err))
	})
	// Reads and deletes work; every acknowledged put is there.
	for _, k := range acked {
		if v, ok := get(t, cl, k, lin); !ok || v != value {
			t.Fatalf("acknowledged %s lost", k)
		}
	}
	if _, err := cl.Delete(ctxT(t, 20*time.Second), &metapb.DeleteRequest{Key: []byte(acked[0])}); err != nil {
		t.Fatalf("delete under the alarm: %v", err)
	}

	// Disarmed while still past the quota: the alarm comes back. (Seen on
	// a replica once it has applied the disarm: the revision metadata-0's
	// leader had after it.)
	if _, err := cl.DisarmAlarm(ctxT(t, 20*time.Second), "", ""); err != nil {
		t.Fatal(err)
	}
	leader := c.WaitLeader(metapb.MetadataGroup, 30*time.Second)
	disarmed := c.Running(leader).FSM(metapb.MetadataGroup).Revision()
	poll.ForTrue(t, "the alarm raised again by a node still past its quota", 30*time.Second, func() bool {
		m := c.Running(leader).FSM(metapb.MetadataGroup)
		if m.Revision() < disarmed {
			return false
		}
		d, err := m.Directory()
		return err == nil && len(d.Alarms) == 1
	})

	// Space freed (the quota raised), disarmed: puts go through again. (A
	// raise the full node decided just before its quota changed may land
	// after a disarm: disarm again, as an admin would.)
	c.Running(full).SetQuotaBytesForTest(1 << 40)
	poll.ForTrue(t, "a put and no alarm after the disarm", 30*time.Second, func() bool {
		if _, err := cl.DisarmAlarm(ctxT(t, 20*time.Second), "", ""); err != nil {
			t.Fatalf("disarm: %v", err)
		}
		_, err := cl.Put(ctxT(t, 20*time.Second), &metapb.PutRequest{Key: []byte("after"), Value: []byte("v")})
		if err != nil && reasonOf(err) != metapb.ReasonNoSpace {
			t.Fatalf("put after the disarm: %v", err)
		}
		a, aerr := cl.Alarms(ctxT(t, 20*time.Second))
		return err == nil && aerr == nil && len(a.Alarms) == 0
	})
}

// reasonOf is the reason in a public API error's ErrorInfo.
func reasonOf(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == metapb.ErrorDomain {
			return info.Reason
		}
	}
	return ""
}
