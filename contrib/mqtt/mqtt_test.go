package mqtt_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	metamqtt "github.com/metamq/meta/contrib/mqtt"
	"github.com/metamq/meta/controller"
	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

// startCluster starts a 3-node meta cluster whose controller declares a
// silent broker down after 2 s.
func startCluster(t *testing.T) *metanodetest.Cluster {
	t.Helper()
	// Brokers die here, nodes do not: patient raft timings keep the
	// leaders where they are on a starved machine.
	return metanodetest.Start(t, metanodetest.Options{Patient: true, Controller: func(c *controller.Config) {
		c.HeartbeatInterval = 500 * time.Millisecond
		c.HeartbeatTimeout = 2 * time.Second
	}})
}

type broker struct {
	id   string
	addr string
	srv  *mochi.Server
	hook *metamqtt.Hook
}

// startBroker starts an in-process mochi broker with the meta hook on a
// free port; it is closed at test end.
func startBroker(t *testing.T, c *metanodetest.Cluster, id string, adjust func(*mochi.Capabilities), hookOpts ...func(*metamqtt.Config)) *broker {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	caps := mochi.NewDefaultServerCapabilities()
	if adjust != nil {
		adjust(caps)
	}
	quiet := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv := mochi.New(&mochi.Options{InlineClient: true, Capabilities: caps, Logger: quiet})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	meta, err := client.New(client.Config{Endpoints: c.Endpoints(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	cfg := metamqtt.Config{BrokerID: id, Endpoints: []string{addr}, Meta: meta, Logger: quiet, WillSweep: time.Second}
	for _, o := range hookOpts {
		o(&cfg)
	}
	hook, err := metamqtt.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := hook.Attach(srv); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := hook.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Close()
		_ = hook.Close()
		_ = meta.Close()
	})
	return &broker{id: id, addr: addr, srv: srv, hook: hook}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// connect connects a Paho (MQTT 3.1.1) client; clean=false asks for a
// persistent session.
func connect(t *testing.T, addr, id string, clean bool, adjust func(*paho.ClientOptions)) (paho.Client, bool) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(clean).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(20 * time.Second).SetKeepAlive(30 * time.Second)
	if adjust != nil {
		adjust(o)
	}
	cl := paho.NewClient(o)
	tok := cl.Connect()
	if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s to %s: %v", id, addr, tok.Error())
	}
	t.Cleanup(func() {
		if cl.IsConnectionOpen() {
			cl.Disconnect(0)
		}
	})
	return cl, tok.(*paho.ConnectToken).SessionPresent()
}

// connectRetrying connects a client with a will, as a device would: a
// broker refuses a connection it cannot record in meta (an election on a
// loaded machine), and the client tries again.
func connectRetrying(t *testing.T, addr, id, willTopic string) error {
	var err error
	for range 20 {
		o := paho.NewClientOptions().AddBroker("tcp://"+addr).SetClientID(id).SetCleanSession(false).
			SetAutoReconnect(false).SetConnectTimeout(20*time.Second).SetKeepAlive(30*time.Second).
			SetWill(willTopic, id, 1, false)
		cl := paho.NewClient(o)
		tok := cl.Connect()
		if !tok.WaitTimeout(30 * time.Second) {
			err = fmt.Errorf("connect %s: timed out", id)
		} else if err = tok.Error(); err == nil {
			t.Cleanup(func() { cl.Disconnect(0) })
			return nil
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("connect %s: %w", id, err)
}

func wait(t *testing.T, tok paho.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("%s: %v (done %v)", what, tok.Error(), tok.WaitTimeout(0))
	}
}

// eventually polls cond until it holds or 60 s pass.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %s after 60s", what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ctx30(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// A client's persistent session follows it from broker A to broker B: B
// answers "session present" and delivers a QoS 1 message published on B
// after the reconnect, with no new SUBSCRIBE. A retained message set
// through A is delivered by B to a new subscriber.
func TestSessionAndRetainedAcrossBrokers(t *testing.T) {
	c := startCluster(t)
	a := startBroker(t, c, "a", nil)
	b := startBroker(t, c, "b", nil)
	meta := c.Client("")

	sub, present := connect(t, a.addr, "mover", false, nil)
	if present {
		t.Fatalf("first connect: got session present, want none")
	}
	wait(t, sub.Subscribe("orders/+", 1, nil), "subscribe on A")
	sub.Disconnect(250)

	got := make(chan string, 10)
	sub, present = connect(t, b.addr, "mover", false, func(o *paho.ClientOptions) {
		o.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { got <- m.Topic() + "=" + string(m.Payload()) })
	})
	if !present {
		t.Fatalf("reconnect to B: got no session present, want the session from A")
	}
	s, err := meta.GetSession(ctx30(t), &metapb.GetSessionRequest{ClientId: "mover"})
	if err != nil || s.Session == nil || s.Session.BrokerId != "b" || !s.Session.Connected {
		t.Fatalf("session in meta: got %v (err %v), want connected to b", s.GetSession(), err)
	}
	pub, _ := connect(t, b.addr, "publisher", true, nil)
	wait(t, pub.Publish("orders/1", 1, false, "qos1 via B"), "publish on B")
	select {
	case m := <-got:
		if m != "orders/1=qos1 via B" {
			t.Fatalf("resumed subscriber: got %q, want orders/1=qos1 via B", m)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("resumed subscriber on B got nothing: its subscription from A was not restored")
	}
	_ = sub

	// Retained: set through A, read by a new subscriber of B.
	pa, _ := connect(t, a.addr, "retainer", true, nil)
	wait(t, pa.Publish("config/site", 1, true, "v1"), "retained publish on A")
	retained := make(chan paho.Message, 1)
	nb, _ := connect(t, b.addr, "newcomer", true, nil)
	wait(t, nb.Subscribe("config/#", 1, func(_ paho.Client, m paho.Message) { retained <- m }), "subscribe on B")
	select {
	case m := <-retained:
		if m.Topic() != "config/site" || string(m.Payload()) != "v1" || !m.Retained() {
			t.Fatalf("retained on B: got %s=%q retained=%v, want config/site=\"v1\" retained", m.Topic(), m.Payload(), m.Retained())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("B delivered no retained message set through A")
	}
	// Cleared through A: B's next subscriber gets nothing.
	wait(t, pa.Publish("config/site", 1, true, ""), "clear retained on A")
	nb2, _ := connect(t, b.addr, "newcomer2", true, nil)
	cleared := make(chan paho.Message, 1)
	wait(t, nb2.Subscribe("config/#", 1, func(_ paho.Client, m paho.Message) { cleared <- m }), "subscribe on B")
	wait(t, pub.Publish("config/marker", 1, false, "after"), "marker")
	if m := <-cleared; m.Topic() != "config/marker" {
		t.Fatalf("after clearing through A, B delivered %s=%q first, want only the marker", m.Topic(), m.Payload())
	}
	if st := b.hook.Stats(); st.SessionCalls == 0 || st.Resumed == 0 {
		t.Fatalf("broker b stats: got %+v, want session calls and a resumed session", st)
	}
}

// A disconnected persistent session is deleted from meta once its expiry
// interval has passed (the broker caps MQTT 3 sessions at 2 s here).
func TestSessionExpiryRemovesSession(t *testing.T) {
	c := startCluster(t)
	a := startBroker(t, c, "a", func(caps *mochi.Capabilities) { caps.MaximumSessionExpiryInterval = 2 })
	meta := c.Client("")
	cl, _ := connect(t, a.addr, "short", false, nil)
	wait(t, cl.Subscribe("x/#", 1, nil), "subscribe")
	cl.Disconnect(250)
	var first *metapb.Session
	eventually(t, "session disconnected in meta", func() (bool, string) {
		r, err := meta.GetSession(ctx30(t), &metapb.GetSessionRequest{ClientId: "short"})
		if err != nil || r.Session == nil {
			return false, fmt.Sprintf("%v (err %v)", r.GetSession(), err)
		}
		first = r.Session
		return !r.Session.Connected, fmt.Sprint(r.Session)
	})
	if first.ExpiryIntervalSeconds != 2 || first.ExpiresAtUnixNano == 0 || !strings.Contains(string(first.State), "x/#") {
		t.Fatalf("disconnected session: got %v, want expiry 2s and the subscription in its state", first)
	}
	eventually(t, "session expired from meta", func() (bool, string) {
		r, err := meta.GetSession(ctx30(t), &metapb.GetSessionRequest{ClientId: "short"})
		return err == nil && r.Session == nil, fmt.Sprintf("%v (err %v)", r.GetSession(), err)
	})
}

// buildBroker builds cmd/metamqtt once per test binary run.
var buildOnce struct {
	sync.Once
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildOnce.path != "" {
		_ = os.RemoveAll(filepath.Dir(buildOnce.path))
	}
	os.Exit(code)
}

func buildBroker(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "metamqtt-bin")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "metamqtt")
		out, err := exec.Command("go", "build", "-o", buildOnce.path, "github.com/metamq/meta/cmd/metamqtt").CombinedOutput()
		if err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// Broker A, a real metamqtt process, is killed with SIGKILL while 100
// clients with wills are connected to it. The two surviving brokers learn
// that A is down, and every will is published exactly once between them
// (counted by a subscriber on each), over several runs.
func TestWillsOfKilledBrokerPublishedOnce(t *testing.T) {
	bin := buildBroker(t)
	c := startCluster(t)
	b := startBroker(t, c, "b", nil)
	d := startBroker(t, c, "d", nil)
	meta := c.Client("")

	var mu sync.Mutex
	counts := map[string]int{} // will payload -> deliveries, both survivors together
	for _, s := range []*broker{b, d} {
		w, _ := connect(t, s.addr, "will-watcher-"+s.id, true, nil)
		wait(t, w.Subscribe("wills/#", 1, func(_ paho.Client, m paho.Message) {
			mu.Lock()
			counts[string(m.Payload())]++
			mu.Unlock()
		}), "watch wills")
	}
	runs, clients := 3, 100
	if testing.Short() {
		runs = 1
	}
	for run := range runs {
		id := fmt.Sprintf("a%d", run)
		addr := freeAddr(t)
		cmd := exec.Command(bin, "--broker-id", id, "--mqtt-listen", addr, "--endpoints", strings.Join(c.Endpoints(), ","), "--log-level", "warn")
		cmd.Stdout, cmd.Stderr = testWriter{t}, testWriter{t}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killed := false
		t.Cleanup(func() {
			if !killed {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
		})
		eventually(t, "broker "+id+" registered", func() (bool, string) {
			list, err := meta.ListBrokers(ctx30(t), &metapb.ListBrokersRequest{})
			for _, b := range list.GetBrokers() {
				if b.BrokerId == id && b.Status == metapb.BrokerStatus_BROKER_STATUS_ALIVE {
					return true, ""
				}
			}
			return false, fmt.Sprintf("not alive (err %v)", err)
		})
		var wg sync.WaitGroup
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cid := fmt.Sprintf("%s-c%03d", id, i)
				if err := connectRetrying(t, addr, cid, "wills/"+cid); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed = true
		_ = cmd.Wait()

		want := func(cid string) int {
			mu.Lock()
			defer mu.Unlock()
			return counts[cid]
		}
		eventually(t, fmt.Sprintf("run %d: every will of %s published", run, id), func() (bool, string) {
			missing := 0
			for i := range clients {
				if want(fmt.Sprintf("%s-c%03d", id, i)) == 0 {
					missing++
				}
			}
			return missing == 0, fmt.Sprintf("%d of %d missing", missing, clients)
		})
		// Every will is completed in meta, so none can be published again.
		eventually(t, "wills completed in meta", func() (bool, string) {
			n := 0
			for i := range clients {
				r, err := meta.GetWill(ctx30(t), &metapb.GetWillRequest{ClientId: fmt.Sprintf("%s-c%03d", id, i)})
				if err != nil || r.Will != nil {
					n++
				}
			}
			return n == 0, fmt.Sprintf("%d wills left", n)
		})
		for i := range clients {
			cid := fmt.Sprintf("%s-c%03d", id, i)
			if n := want(cid); n != 1 {
				t.Errorf("run %d: will of %s published %d times, want once", run, cid, n)
			}
		}
	}
	if st := b.hook.Stats().WillsPublished + d.hook.Stats().WillsPublished; st != uint64(runs*clients) {
		t.Fatalf("survivors claimed and published %d wills, want %d", st, runs*clients)
	}
}

// A second registration of the broker's id fences the first: its next
// heartbeat is refused with STALE_EPOCH and OnFenced tells the broker to
// stop.
func TestFencedBrokerIsTold(t *testing.T) {
	c := startCluster(t)
	fenced := make(chan error, 1)
	startBroker(t, c, "twin", nil, func(cfg *metamqtt.Config) {
		cfg.OnFenced = func(err error) { fenced <- err }
	})
	meta := c.Client("")
	if _, err := meta.RegisterBroker(ctx30(t), &metapb.RegisterBrokerRequest{BrokerId: "twin"}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-fenced:
		if !client.IsStaleEpoch(err) {
			t.Fatalf("fenced with %v, want a STALE_EPOCH error", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("broker not told it was fenced 60s after another registration of its id")
	}
}
