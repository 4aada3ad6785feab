package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/spf13/cobra"

	metamqtt "github.com/metamq/meta/contrib/mqtt"
	"github.com/metamq/meta/rpc/client"
)

// defaultEndpoints is the cluster `make run` starts.
const defaultEndpoints = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"

type options struct {
	brokerID      string
	mqttListen    string
	wsListen      string
	endpoints     string
	store         string
	maxExpiry     uint32
	batchSize     int
	batchDelay    time.Duration
	claimTTL      time.Duration
	statsInterval time.Duration
	logLevel      string
}

func main() {
	code, err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "metamqtt:", err)
	}
	os.Exit(code)
}

func run(args []string) (int, error) {
	var o options
	code := 0
	cmd := &cobra.Command{
		Use:           "metamqtt --broker-id ID [--mqtt-listen ADDR]",
		Short:         "An MQTT broker whose state lives in a meta cluster",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(*cobra.Command, []string) error {
			var err error
			code, err = serve(o)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.brokerID, "broker-id", "", "this broker's id in meta (required)")
	f.StringVar(&o.mqttListen, "mqtt-listen", "127.0.0.1:1883", "MQTT over TCP listener address")
	f.StringVar(&o.wsListen, "ws-listen", "", "MQTT over websocket listener address (empty: none)")
	f.StringVar(&o.endpoints, "endpoints", defaultEndpoints, "comma-separated host:port of meta nodes")
	f.StringVar(&o.store, "store", "meta", "where sessions live: meta, or memory (mochi's default, this broker only)")
	f.Uint32Var(&o.maxExpiry, "max-session-expiry", math.MaxUint32, "maximum session expiry interval in seconds (MQTT 3 persistent sessions get it); 4294967295 is never")
	f.IntVar(&o.batchSize, "batch-size", 1000, "most session writes in one meta call")
	f.DurationVar(&o.batchDelay, "batch-delay", 2*time.Millisecond, "longest wait to fill a batch of session writes")
	f.DurationVar(&o.claimTTL, "will-claim-ttl", 30*time.Second, "how long a will claim lasts before another broker may publish it")
	f.DurationVar(&o.statsInterval, "stats-interval", 0, "log counters (connections, meta calls, batch sizes) at this interval (0: only at exit)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		if code == 0 {
			code = 1
		}
		return code, err
	}
	return code, nil
}

func (o options) validate() error {
	var errs []error
	if o.brokerID == "" {
		errs = append(errs, errors.New("--broker-id: required"))
	}
	if o.mqttListen == "" {
		errs = append(errs, errors.New("--mqtt-listen: must not be empty"))
	}
	if o.store != "meta" && o.store != "memory" {
		errs = append(errs, fmt.Errorf("--store: %q is not meta or memory", o.store))
	}
	if o.store == "meta" && strings.TrimSpace(o.endpoints) == "" {
		errs = append(errs, errors.New("--endpoints: required with --store meta"))
	}
	if o.batchSize <= 0 {
		errs = append(errs, fmt.Errorf("--batch-size: %d, must be positive", o.batchSize))
	}
	if o.batchDelay <= 0 {
		errs = append(errs, fmt.Errorf("--batch-delay: %v, must be positive", o.batchDelay))
	}
	if o.claimTTL < time.Second {
		errs = append(errs, fmt.Errorf("--will-claim-ttl: %v, at least 1s", o.claimTTL))
	}
	if _, err := level(o.logLevel); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func level(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level: %q is not debug, info, warn or error", s)
	}
	return l, nil
}

func serve(o options) (int, error) {
	if err := o.validate(); err != nil {
		return 1, err
	}
	lvl, _ := level(o.logLevel)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumSessionExpiryInterval = o.maxExpiry
	caps.MaximumClients = math.MaxInt64
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Capabilities: caps, Logger: log.With("component", "mochi")})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return 1, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var hook *metamqtt.Hook
	fenced := make(chan error, 1)
	if o.store == "meta" {
		meta, err := client.New(client.Config{Endpoints: strings.Split(o.endpoints, ","), Logger: log.With("component", "meta-client")})
		if err != nil {
			return 1, fmt.Errorf("--endpoints: %w", err)
		}
		defer func() { _ = meta.Close() }()
		eps := []string{"tcp://" + o.mqttListen}
		if o.wsListen != "" {
			eps = append(eps, "ws://"+o.wsListen)
		}
		hook, err = metamqtt.New(metamqtt.Config{BrokerID: o.brokerID, Endpoints: eps, Meta: meta, Logger: log,
			BatchSize: o.batchSize, BatchDelay: o.batchDelay, ClaimTTL: o.claimTTL,
			OnFenced: func(err error) {
				select {
				case fenced <- err:
				default:
				}
			}})
		if err != nil {
			return 1, err
		}
		if err := hook.Attach(srv); err != nil {
			return 1, err
		}
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: o.mqttListen})); err != nil {
		return 1, fmt.Errorf("--mqtt-listen: %w", err)
	}
	if o.wsListen != "" {
		if err := srv.AddListener(listeners.NewWebsocket(listeners.Config{ID: "ws", Address: o.wsListen})); err != nil {
			return 1, fmt.Errorf("--ws-listen: %w", err)
		}
	}
	if hook != nil {
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err := hook.Start(sctx)
		cancel()
		if err != nil {
			_ = hook.Close()
			return 1, err
		}
	}
	if err := srv.Serve(); err != nil {
		if hook != nil {
			_ = hook.Close()
		}
		return 1, err
	}
	log.Info("serving", "broker", o.brokerID, "mqtt", o.mqttListen, "ws", o.wsListen, "store", o.store)

	report := func() {
		args := []any{"clients_connected", srv.Info.ClientsConnected}
		if hook != nil {
			st := hook.Stats()
			mean := 0.0
			if st.SessionCalls > 0 {
				mean = float64(st.SessionWrites) / float64(st.SessionCalls)
			}
			args = append(args, "session_calls", st.SessionCalls, "session_writes", st.SessionWrites,
				"mean_batch", fmt.Sprintf("%.1f", mean), "resumed", st.Resumed, "wills_published", st.WillsPublished)
		}
		log.Info("stats", args...)
	}
	var tick <-chan time.Time
	if o.statsInterval > 0 {
		t := time.NewTicker(o.statsInterval)
		defer t.Stop()
		tick = t.C
	}
	code := 0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-fenced:
			log.Error("fenced by another registration of this broker id; stopping", "err", err)
			code = 2
			break loop
		case <-tick:
			report()
		}
	}
	report()
	_ = srv.Close()
	if hook != nil {
		_ = hook.Close()
	}
	return code, nil
}
