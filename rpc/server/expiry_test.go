package server_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify/poll"
	"github.com/metamq/meta/verify/testkit"
)

const never = 0xFFFFFFFF

// Expiry of sessions, wills, claims and leases is decided by the group
// leaders from a clock the test moves by hand, and applied through raft;
// nothing here sleeps on real time for it.
func TestExpiryThroughRaft(t *testing.T) {
	clk := testkit.NewFakeClock(time.Unix(1_700_000_000, 0))
	c := metanodetest.Start(t, metanodetest.Options{DataGroups: 2, Configure: func(cfg *metanode.Config) {
		cfg.Clock = clk
		cfg.TimerInterval = 20 * time.Millisecond
	}})
	cl := c.Client("")
	t.Run("sessions", func(t *testing.T) { testSessionExpiry(t, cl, clk) })
	t.Run("wills", func(t *testing.T) { testWillsDue(t, cl, clk) })
	t.Run("due wills pages and claim race", func(t *testing.T) { testClaims(t, c, cl, clk) })
	t.Run("leases", func(t *testing.T) { testLeaseExpiry(t, cl, clk) })
}

func session(id string, connected bool, expiry uint32) *metapb.Session {
	return &metapb.Session{ClientId: id, BrokerId: "b1", Connected: connected, ExpiryIntervalSeconds: expiry}
}

func getSession(t *testing.T, cl *client.Client, id string) *metapb.Session {
	t.Helper()
	return must(cl.GetSession(ctx10(t), &metapb.GetSessionRequest{ClientId: id}))(t).Session
}

func getWill(t *testing.T, cl *client.Client, id string) *metapb.Will {
	t.Helper()
	return must(cl.GetWill(ctx10(t), &metapb.GetWillRequest{ClientId: id}))(t).Will
}

func testSessionExpiry(t *testing.T, cl *client.Client, clk *testkit.FakeClock) {
	// All in one group, so that one expiry pass of its leader sees all.
	ids := idsIn("se-", "data-0", 2, 5)
	gone, connected, forever, later, back := ids[0], ids[1], ids[2], ids[3], ids[4]
	must(cl.PutSessions(ctx10(t), &metapb.PutSessionsRequest{Sessions: []*metapb.Session{
		session(gone, false, 30), session(connected, true, 30), session(forever, false, never),
		session(later, false, 300), session(back, false, 30)}}))(t)
	if s := getSession(t, cl, forever); s.ExpiresAtUnixNano != 0 || s.DisconnectedAtUnixNano != clk.Now().UnixNano() {
		t.Fatalf("never-expiring session: got expires at %d, disconnected at %d; want 0 and the leader's clock %d",
			s.ExpiresAtUnixNano, s.DisconnectedAtUnixNano, clk.Now().UnixNano())
	}
	clk.Advance(10 * time.Second)
	// Reconnecting cancels the expiry.
	must(cl.PutSessions(ctx10(t), &metapb.PutSessionsRequest{Sessions: []*metapb.Session{session(back, true, 30)}}))(t)
	clk.Advance(21 * time.Second)
	poll.ForTrue(t, "the disconnected session to expire", 20*time.Second, func() bool { return getSession(t, cl, gone) == nil })
	for _, id := range []string{connected, forever, later, back} {
		if getSession(t, cl, id) == nil {
			t.Fatalf("session %s expired with %s, want it kept", id, gone)
		}
	}
	clk.Advance(300 * time.Second)
	poll.ForTrue(t, "the 300s session to expire", 20*time.Second, func() bool { return getSession(t, cl, later) == nil })
	if getSession(t, cl, forever) == nil || getSession(t, cl, back) == nil {
		t.Fatalf("a session that never expires (or is connected) expired")
	}
}

func testWillsDue(t *testing.T, cl *client.Client, clk *testkit.FakeClock) {
	ids := idsIn("wd-", "data-1", 2, 2)
	byDelay, bySession := ids[0], ids[1]
	// Will due by its delay, after the client disconnects.
	must(cl.PutSessions(ctx10(t), &metapb.PutSessionsRequest{Sessions: []*metapb.Session{session(byDelay, true, 3600)}}))(t)
	must(cl.PutWill(ctx10(t), &metapb.PutWillRequest{Will: &metapb.Will{ClientId: byDelay, Topic: "t", Payload: []byte("x"), DelaySeconds: 10}}))(t)
	must(cl.PutSessions(ctx10(t), &metapb.PutSessionsRequest{Sessions: []*metapb.Session{session(byDelay, false, 3600)}}))(t)
	if w := getWill(t, cl, byDelay); w.State != metapb.WillState_WILL_STATE_ARMED || w.DueAtUnixNano != clk.Now().Add(10*time.Second).UnixNano() {
		t.Fatalf("will after disconnect: got %v, want ARMED and due in 10s", w)
	}
	// Will due when its session expires, before its delay.
	must(cl.PutSessions(ctx10(t), &metapb.PutSessionsRequest{Sessions: []*metapb.Session{session(bySession, false, 5)}}))(t)
	must(cl.PutWill(ctx10(t), &metapb.PutWillRequest{Will: &metapb.Will{ClientId: bySession, Topic: "t", Payload: []byte("x"), DelaySeconds: 100}}))(t)

	clk.Advance(6 * time.Second)
	poll.ForTrue(t, "the session to expire and its will to be due", 20*time.Second, func() bool {
		return getSession(t, cl, bySession) == nil && getWill(t, cl, bySession).GetState() == metapb.WillState_WILL_STATE_DUE
	})
	if w := getWill(t, cl, byDelay); w.State != metapb.WillState_WILL_STATE_ARMED {
		t.Fatalf("will with 10s delay after 6s: got %s, want ARMED", w.State)
	}
	clk.Advance(5 * time.Second)
	poll.ForTrue(t, "the delayed will to be due", 20*time.Second, func() bool {
		return getWill(t, cl, byDelay).GetState() == metapb.WillState_WILL_STATE_DUE
	})
	due := must(cl.ListDueWills(ctx10(t), &metapb.ListDueWillsRequest{}))(t)
	var got []string
	for _, w := range due.Wills {
		got = append(got, w.ClientId)
	}
	if want := []string{byDelay, bySession}; !slices.Equal(got, want) {
		t.Fatalf("due wills: got %v, want %v", got, want)
	}
	for _, id := range ids {
		must(cl.DeleteWill(ctx10(t), &metapb.DeleteWillRequest{ClientId: id}))(t)
	}
}

func testClaims(t *testing.T, c *metanodetest.Cluster, cl *client.Client, clk *testkit.FakeClock) {
	// 25 wills due at once: their clients are gone and the delay is 0.
	var ids []string
	var sessions []*metapb.Session
	for i := 0; i < 25; i++ {
		id := fmt.Sprintf("cl-%02d", i)
		ids = append(ids, id)
		sessions = append(sessions, session(id, false, never))
	}
	must(cl.PutSessions(ctx10(t), &metapb.PutSessionsRequest{Sessions: sessions}))(t)
	for _, id := range ids {
		must(cl.PutWill(ctx10(t), &metapb.PutWillRequest{Will: &metapb.Will{ClientId: id, Topic: "lwt/" + id, Payload: []byte("bye")}}))(t)
	}
	listDue := func() []string {
		out, _ := allPages(t, func(start string) (*metapb.ListDueWillsResponse, error) {
			return cl.ListDueWills(ctx10(t), &metapb.ListDueWillsRequest{Limit: 10, StartAfter: start})
		}, func(resp *metapb.ListDueWillsResponse) []string {
			if len(resp.Wills) > 10 {
				t.Fatalf("page of %d wills, limit 10", len(resp.Wills))
			}
			return keysOf(resp.Wills, (*metapb.Will).GetClientId)
		})
		return out
	}
	if got := listDue(); !slices.Equal(got, ids) {
		t.Fatalf("due wills over pages: got %v, want %v", got, ids)
	}

	// Two brokers claim every will at once, through different nodes.
	nodes := c.IDs()
	brokers := []*client.Client{c.Client(nodes[0]), c.Client(nodes[1])}
	for _, id := range ids[:10] {
		var wg sync.WaitGroup
		start := make(chan struct{})
		resps := make([]*metapb.ClaimWillResponse, 2)
		errs := make([]error, 2)
		for b := range brokers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				resps[b], errs[b] = brokers[b].ClaimWill(ctx10(t), &metapb.ClaimWillRequest{ClientId: id, BrokerId: fmt.Sprintf("broker-%d", b)})
			}()
		}
		close(start)
		wg.Wait()
		for b, err := range errs {
			if err != nil {
				t.Fatalf("claim of %s by broker-%d: %v", id, b, err)
			}
		}
		if resps[0].Claimed == resps[1].Claimed {
			t.Fatalf("claim of %s: got claimed %v and %v, want exactly one winner", id, resps[0].Claimed, resps[1].Claimed)
		}
		win, lose := 0, 1
		if resps[1].Claimed {
			win, lose = 1, 0
		}
		winner := fmt.Sprintf("broker-%d", win)
		if w := resps[lose].Will; w.GetState() != metapb.WillState_WILL_STATE_CLAIMED || w.ClaimedBy != winner {
			t.Fatalf("loser's view of %s: got %v, want claimed by %s", id, w, winner)
		}
		if cw := must(brokers[lose].CompleteWill(ctx10(t), &metapb.CompleteWillRequest{ClientId: id, BrokerId: fmt.Sprintf("broker-%d", lose)}))(t); cw.Completed {
			t.Fatalf("the loser completed %s", id)
		}
		if cw := must(brokers[win].CompleteWill(ctx10(t), &metapb.CompleteWillRequest{ClientId: id, BrokerId: winner}))(t); !cw.Completed {
			t.Fatalf("the winner could not complete %s", id)
		}
		if w := getWill(t, cl, id); w != nil {
			t.Fatalf("completed will %s still there: %v", id, w)
		}
	}
	if got := listDue(); !slices.Equal(got, ids[10:]) {
		t.Fatalf("due wills after 10 completions: got %v, want %v", got, ids[10:])
	}

	// A claim that is not completed in time lapses; another broker may
	// claim the will then.
	id := ids[10]
	cw := must(cl.ClaimWill(ctx10(t), &metapb.ClaimWillRequest{ClientId: id, BrokerId: "slow", ClaimTtlSeconds: 5}))(t)
	if !cw.Claimed || cw.Will.ClaimExpiresAtUnixNano != clk.Now().Add(5*time.Second).UnixNano() {
		t.Fatalf("claim with ttl 5: got %v", cw)
	}
	if got := listDue(); slices.Contains(got, id) {
		t.Fatalf("a claimed will is listed as due")
	}
	if again := must(cl.ClaimWill(ctx10(t), &metapb.ClaimWillRequest{ClientId: id, BrokerId: "other"}))(t); again.Claimed {
		t.Fatalf("a will claimed by slow was claimed again before the claim lapsed")
	}
	clk.Advance(6 * time.Second)
	poll.ForTrue(t, "the lapsed claim to make the will due again", 20*time.Second, func() bool {
		return getWill(t, cl, id).GetState() == metapb.WillState_WILL_STATE_DUE
	})
	if again := must(cl.ClaimWill(ctx10(t), &metapb.ClaimWillRequest{ClientId: id, BrokerId: "other"}))(t); !again.Claimed || again.Will.ClaimedBy != "other" {
		t.Fatalf("claim after the lapse: got %v, want claimed by other", again)
	}
}

func testLeaseExpiry(t *testing.T, cl *client.Client, clk *testkit.FakeClock) {
	grant := func() int64 {
		return must(cl.LeaseGrant(ctx10(t), &metapb.LeaseGrantRequest{TtlSeconds: 10}))(t).Id
	}
	kept, lapsing := grant(), grant()
	k0 := idsIn("le-", "data-0", 2, 2)
	k1 := idsIn("le-", "data-1", 2, 1)
	put := func(key string, lease int64) {
		must(cl.Put(ctx10(t), &metapb.PutRequest{Key: []byte(key), Value: []byte("v"), Lease: lease}))(t)
	}
	// Both leases have a key in data-0: one expiry pass there sees both.
	put(k0[0], lapsing)
	put(k1[0], lapsing)
	put(k0[1], kept)
	exists := func(key string) bool {
		return must(cl.Get(ctx10(t), &metapb.GetRequest{Key: []byte(key)}))(t).Kv != nil
	}
	clk.Advance(6 * time.Second)
	if ka := must(cl.LeaseKeepAlive(ctx10(t), &metapb.LeaseKeepAliveRequest{Id: kept}))(t); ka.TtlSeconds != 10 {
		t.Fatalf("keepalive: got ttl %d, want 10", ka.TtlSeconds)
	}
	clk.Advance(6 * time.Second) // lapsing expired 2s ago; kept has 4s left
	poll.ForTrue(t, "the lapsed lease's keys to be deleted in both groups", 20*time.Second, func() bool {
		return !exists(k0[0]) && !exists(k1[0])
	})
	if !exists(k0[1]) {
		t.Fatalf("the key of the kept-alive lease was deleted")
	}
	if ttl := must(cl.LeaseTimeToLive(ctx10(t), &metapb.LeaseTimeToLiveRequest{Id: lapsing}))(t); ttl.TtlSeconds != -1 {
		t.Fatalf("ttl of the expired lease: got %d, want -1", ttl.TtlSeconds)
	}
	if ttl := must(cl.LeaseTimeToLive(ctx10(t), &metapb.LeaseTimeToLiveRequest{Id: kept}))(t); ttl.TtlSeconds != 4 {
		t.Fatalf("ttl of the kept lease: got %d, want 4", ttl.TtlSeconds)
	}
	_, err := cl.LeaseKeepAlive(ctx10(t), &metapb.LeaseKeepAliveRequest{Id: lapsing})
	if !client.IsNotFound(err) {
		t.Fatalf("keepalive of an expired lease: got %v, want NotFound", err)
	}
	clk.Advance(5 * time.Second)
	poll.ForTrue(t, "the kept lease to expire once not kept alive", 20*time.Second, func() bool { return !exists(k0[1]) })
}
