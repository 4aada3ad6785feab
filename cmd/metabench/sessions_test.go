package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/metapb"
)

func (f *fakeConn) putSessions(ctx context.Context, sessions []session) error {
	return f.locked(ctx, func() {
		for _, s := range sessions {
			// The workload reuses its buffers after the call returns, as a
			// real connection is allowed to assume: keep a copy.
			s.state = slices.Clone(s.state)
			f.sessions[s.clientID] = s
			f.sessionPuts[s.clientID]++
		}
	})
}

func (f *fakeConn) listSessions(ctx context.Context, startAfter string, limit int, _ bool) (sessionPage, error) {
	var page sessionPage
	err := f.locked(ctx, func() {
		var ids []string
		for id := range f.sessions {
			if id > startAfter {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		if len(ids) > limit {
			ids, page.more = ids[:limit], true
			page.next = ids[limit-1]
		}
		page.ids = ids
	})
	return page, err
}

func testShape(prefix string, size int) sessionShape {
	return sessionShape{ids: keySpace{prefix: prefix, size: size}, brokerID: "b1", expirySeconds: 3600}
}

func TestRunSessionsWritesEveryClientOnce(t *testing.T) {
	f := newFakeConn()
	wl := &sessionsWorkload{shape: testShape("s/", 8), batch: 7}
	res := mustRun(t, "run", wl, []conn{f, f}, testConfig(5, 103, 7))
	if res.Calls != 15 || res.OK != 15 || res.Items != 103 {
		t.Errorf("got calls %d ok %d items %d, want 15, 15, 103", res.Calls, res.OK, res.Items)
	}
	if len(f.sessions) != 103 {
		t.Fatalf("distinct client ids: got %d, want 103", len(f.sessions))
	}
	ks := keySpace{prefix: "s/", size: 8}
	for i := range int64(103) {
		id := string(ks.key(nil, i))
		s, ok := f.sessions[id]
		if !ok {
			t.Errorf("session %q: got none, want one", id)
			continue
		}
		if n := f.sessionPuts[id]; n != 1 {
			t.Errorf("session %q: got %d puts, want 1", id, n)
		}
		if !s.connected || s.brokerID != "b1" || s.expirySeconds != 3600 || len(s.state) != 8 {
			t.Errorf("session %q: got %+v, want connected, broker b1, expiry 3600, 8-byte state", id, s)
		}
	}
}

func TestRunSessionsListPagesThrough(t *testing.T) {
	f := newFakeConn()
	// Another prefix's sessions sort after the listed ones: the last
	// page may be followed by them.
	f.sessions["t/other"] = session{clientID: "t/other"}
	wl := &sessionsListWorkload{shape: testShape("s/", 8), batch: 10, reads: reads{n: 95, load: true}}
	res := mustRun(t, "run", wl, []conn{f}, testConfig(3, 95, 10))
	if len(f.sessions) != 96 {
		t.Errorf("sessions after loading: got %d, want 96", len(f.sessions))
	}
	if res.Calls != 10 || res.OK != 10 || res.Items != 95 || res.Missing != 0 {
		t.Errorf("got calls %d ok %d items %d missing %d, want 10, 10, 95, 0", res.Calls, res.OK, res.Items, res.Missing)
	}

	// A session gone from the middle spoils its page only: every page
	// starts after a fixed client id.
	delete(f.sessions, string(keySpace{prefix: "s/", size: 8}.key(nil, 42)))
	wl.load = false
	cfg := testConfig(1, 95, 10)
	cfg.maxErrorRate = 1
	res = mustRun(t, "run with a session missing", wl, []conn{f}, cfg)
	if res.Missing != 1 || res.OK != 9 || !strings.Contains(res.FirstError, "s/000042") {
		t.Errorf("with session 42 gone: got missing %d ok %d first error %q, want 1 missing, 9 ok, naming s/000042",
			res.Missing, res.OK, res.FirstError)
	}

	// Stale: a lagging replica's short page is a stale miss.
	wl.stale = true
	res = mustRun(t, "stale run", wl, []conn{f}, testConfig(1, 95, 10))
	if res.StaleMisses != 1 || res.OK != 10 || res.Missing != 0 {
		t.Errorf("stale: got stale misses %d ok %d missing %d, want 1, 10, 0", res.StaleMisses, res.OK, res.Missing)
	}
}

func TestSessionsListCheckPage(t *testing.T) {
	l := &sessionsListWorkload{shape: testShape("p", 4), batch: 3, reads: reads{n: 10}}
	w := newWorker(0, 1, 0)
	ids := func(is ...int) []string {
		var out []string
		for _, i := range is {
			out = append(out, string(l.shape.ids.key(nil, int64(i))))
		}
		return out
	}
	tests := []struct {
		name    string
		page    sessionPage
		first   int64
		n       int
		notLast bool
		wantErr bool
	}{
		{"exact", sessionPage{ids: ids(3, 4, 5), more: true, next: "p005"}, 3, 3, true, false},
		{"short", sessionPage{ids: ids(3, 4)}, 3, 3, true, true},
		{"gap", sessionPage{ids: ids(3, 5, 6), more: true, next: "p006"}, 3, 3, true, true},
		{"no more before the end", sessionPage{ids: ids(3, 4, 5)}, 3, 3, true, true},
		{"cursor not the last id", sessionPage{ids: ids(3, 4, 5), more: true, next: "p004"}, 3, 3, true, true},
		{"last page, nothing after", sessionPage{ids: ids(9)}, 9, 1, false, false},
		{"last page, others after", sessionPage{ids: []string{"p009", "q"}, more: true, next: "q"}, 9, 1, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := l.checkPage(w, tt.page, tt.first, tt.n, tt.notLast)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, errPage) {
				t.Errorf("got %v, want it to wrap %v", err, errPage)
			}
		})
	}
}

func TestSessionShapeMaxBatch(t *testing.T) {
	s := testShape("x", 32) // 32 + 2 + state + 16 bytes a session
	tests := []struct {
		want, state, got int
	}{
		{100, 256, 100},
		{20000, 0, metapb.MaxBatchEntries},
		{1000, 64 << 10, metapb.MaxBatchBytes / (50 + 64<<10)},
	}
	for _, tt := range tests {
		if got := s.maxBatch(tt.want, tt.state); got != tt.got {
			t.Errorf("maxBatch(%d, state %d): got %d, want %d", tt.want, tt.state, got, tt.got)
		}
		if b := s.batchBytes(s.maxBatch(tt.want, tt.state), tt.state); b > metapb.MaxBatchBytes {
			t.Errorf("maxBatch(%d, state %d) makes %d bytes, want at most %d", tt.want, tt.state, b, metapb.MaxBatchBytes)
		}
	}
}

func TestSessionsFlagErrors(t *testing.T) {
	testFlagErrors(t, []flagErrorCase{
		{[]string{"sessions", "--batch", "20000"}, []string{"at most 10000 sessions"}},
		{[]string{"sessions", "--batch", "1000", "--value-size", "8192"}, []string{"use --batch 508 or less"}},
		{[]string{"sessions", "--value-size", "70000", "--expiry-seconds", "-1"}, []string{"--value-size: 70000", "--expiry-seconds: -1"}},
		{[]string{"sessions", "--key-size", "300"}, []string{"a client id has at most 256"}},
		{[]string{"sessions", "--key-size", "16", "--total", "1000"}, []string{"--key-size 16 is too small"}},
		{[]string{"sessions-list", "--batch", "10001"}, []string{"at most 10000 sessions"}},
		{[]string{"sessions-list", "--consistency", "serializable"}, []string{"--consistency"}},
	})
}

// TestSessionsAgainstMetaCluster runs both session commands against an
// in-process cluster with three data groups, so that every batch is
// split by group and every page is merged from the groups.
func TestSessionsAgainstMetaCluster(t *testing.T) {
	c, eps := startCluster(t, metanodetest.Options{DataGroups: 3})

	// An election under load may cost a pass a call (as in
	// TestAgainstMetaCluster); a pass writes the same sessions again, so
	// the one that fails nothing is checked.
	var res *Result
	var err error
	for pass := 1; ; pass++ {
		res, err = executeJSON(t, "sessions", "--endpoints", eps, "--clients", "4", "--total", "1050",
			"--batch", "100", "--value-size", "64", "--key-prefix", "e2e-", "--broker", "b7")
		if err == nil {
			break
		}
		if !errors.Is(err, ErrTooManyFailures) || pass == 3 {
			t.Fatalf("sessions (pass %d): %v", pass, err)
		}
		t.Logf("sessions pass %d: %v (a loaded machine?); once more", pass, err)
	}
	if res.Calls != 11 || res.OK != 11 || res.Items != 1050 || res.Unit != "sessions" || res.Command != "sessions" {
		t.Errorf("sessions result: got calls %d ok %d items %d unit %s command %s, want 11 11 1050 sessions sessions",
			res.Calls, res.OK, res.Items, res.Unit, res.Command)
	}
	cl, ctx := readBack(t, c)
	ks := keySpace{prefix: "e2e-", size: 32}
	for _, i := range []int64{0, 99, 100, 1049} {
		resp, err := cl.GetSession(ctx, &metapb.GetSessionRequest{ClientId: string(ks.key(nil, i))})
		if err != nil {
			t.Fatalf("get session %d: %v", i, err)
		}
		s := resp.Session
		if s == nil || !s.Connected || s.BrokerId != "b7" || s.ExpiryIntervalSeconds != 7*24*3600 || len(s.State) != 64 || s.ExpiresAtUnixNano != 0 {
			t.Errorf("session %d: got %v, want connected, broker b7, expiry 604800 s, 64-byte state, no expiry time", i, s)
		}
	}
	if resp, err := cl.GetSession(ctx, &metapb.GetSessionRequest{ClientId: string(ks.key(nil, 1050))}); err != nil || resp.Session != nil {
		t.Errorf("session 1050 (past --total): got %v, %v; want none", resp.GetSession(), err)
	}

	// Listing what sessions wrote, in pages of 64, one worker and several.
	for _, clients := range []string{"1", "3"} {
		res, err = executeJSON(t, "sessions-list", "--endpoints", eps, "--clients", clients, "--total", "1050",
			"--batch", "64", "--key-prefix", "e2e-", "--load=false")
		if err != nil || res.Calls != 17 || res.OK != 17 || res.Items != 1050 || res.Missing != 0 || res.Consistency != "linearizable" {
			t.Errorf("sessions-list with %s clients: got %+v, %v; want 17 pages carrying 1050 sessions, none missing", clients, res, err)
		}
	}
	// More sessions than were written: the pages past the end are short.
	res, err = executeJSON(t, "sessions-list", "--endpoints", eps, "--clients", "1", "--total", "1200",
		"--batch", "100", "--key-prefix", "e2e-", "--load=false")
	if !errors.Is(err, ErrTooManyFailures) || res == nil || res.Missing == 0 {
		t.Errorf("sessions-list past the sessions written: got %+v, %v; want missing pages and %v", res, err, ErrTooManyFailures)
	}
	// Loading, then listing stale.
	res, err = executeJSON(t, "sessions-list", "--endpoints", eps, "--clients", "2", "--total", "300",
		"--batch", "50", "--key-prefix", "e2e-load-", "--consistency", "stale")
	if err != nil || res.OK != 6 || res.Items != 300 || res.Missing != 0 {
		t.Errorf("stale sessions-list after loading: got %+v, %v; want 6 pages carrying 300 sessions", res, err)
	}
	list, err := cl.ListSessions(ctx, &metapb.ListSessionsRequest{StartAfter: "e2e-load-", Limit: 1000})
	if err != nil {
		t.Fatalf("list loaded sessions: %v", err)
	}
	var loaded int
	for _, s := range list.Sessions {
		if strings.HasPrefix(s.ClientId, "e2e-load-") {
			loaded++
		}
	}
	if loaded != 300 {
		t.Errorf("sessions loaded by sessions-list: got %d, want 300", loaded)
	}
}

func TestSessionShapeFill(t *testing.T) {
	s := testShape("bench-session-", 20)
	w := newWorker(0, 1, 4)
	got := s.fill(w, 98, 3)
	want := []string{"bench-session-000098", "bench-session-000099", "bench-session-000100"}
	if len(got) != len(want) {
		t.Fatalf("fill(98, 3): got %d sessions, want %d", len(got), len(want))
	}
	for i, se := range got {
		if se.clientID != want[i] || !se.connected || se.brokerID != "b1" || se.expirySeconds != 3600 || string(se.state) != string(w.value) {
			t.Errorf("session %d: got %+v, want client id %s, connected, broker b1, expiry 3600, the worker's value", i, se, want[i])
		}
	}
}
