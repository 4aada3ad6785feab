package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
)

// mqttOptions configure `metabench mqtt`: many MQTT clients connecting to
// several brokers at once, then (with --reconnect) each reconnecting to
// the next broker, as after a broker failure or a load balancer reshuffle.
type mqttOptions struct {
	brokers   string
	clients   int
	parallel  int
	prefix    string
	clean     bool
	reconnect bool
	timeout   time.Duration
	output    string
}

// mqttPhase is the outcome of one connect (or reconnect) phase.
type mqttPhase struct {
	Phase          string  `json:"phase"`
	Clients        int     `json:"clients"`
	Connected      int     `json:"connected"`
	Failed         int     `json:"failed"`
	SessionPresent int     `json:"session_present"`
	Seconds        float64 `json:"seconds"`
	PerSecond      float64 `json:"connects_per_second"`
	FirstError     string  `json:"first_error,omitempty"`
}

func mqttCommand(stdout io.Writer) *cobra.Command {
	var o mqttOptions
	cmd := &cobra.Command{
		Use:   "mqtt --brokers HOST:PORT,... [--clients N] [--reconnect]",
		Short: "Connect many MQTT clients (persistent sessions) to brokers at once; with --reconnect, move each to the next broker",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMQTT(cmd.Context(), o, stdout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.brokers, "brokers", "127.0.0.1:1883,127.0.0.1:1884", "comma-separated MQTT brokers; client i connects to broker i mod count")
	f.IntVar(&o.clients, "clients", 1000, "MQTT clients (each keeps one TCP connection open: mind the fd limit)")
	f.IntVar(&o.parallel, "parallel", 256, "connects under way at once")
	f.StringVar(&o.prefix, "prefix", "bench-mqtt-", "prefix of the client ids")
	f.BoolVar(&o.clean, "clean", false, "clean sessions (default: persistent sessions)")
	f.BoolVar(&o.reconnect, "reconnect", true, "after connecting all, drop every connection and reconnect each client to the next broker")
	f.DurationVar(&o.timeout, "timeout", 60*time.Second, "deadline of one connect")
	f.StringVar(&o.output, "output", "text", "text or json")
	return cmd
}

func (o mqttOptions) validate() error {
	var errs []error
	if strings.TrimSpace(o.brokers) == "" {
		errs = append(errs, errors.New("--brokers: at least one broker is required"))
	}
	if o.clients <= 0 {
		errs = append(errs, fmt.Errorf("--clients: %d, must be positive", o.clients))
	}
	if o.parallel <= 0 {
		errs = append(errs, fmt.Errorf("--parallel: %d, must be positive", o.parallel))
	}
	if o.timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout: %v, must be positive", o.timeout))
	}
	if o.output != "text" && o.output != "json" {
		errs = append(errs, fmt.Errorf("--output: %q is not text or json", o.output))
	}
	return errors.Join(errs...)
}

func runMQTT(ctx context.Context, o mqttOptions, out io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	brokers := strings.Split(o.brokers, ",")
	conns := make([]net.Conn, o.clients)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	phases := []mqttPhase{connectAll(ctx, o, brokers, conns, 0, "connect")}
	if o.reconnect {
		for i, c := range conns {
			if c != nil {
				_ = c.Close()
				conns[i] = nil
			}
		}
		phases = append(phases, connectAll(ctx, o, brokers, conns, 1, "reconnect to the next broker"))
	}
	if o.output == "json" {
		return json.NewEncoder(out).Encode(phases)
	}
	for _, p := range phases {
		fmt.Fprintf(out, "%-30s clients %d  connected %d  failed %d  session present %d  %.1fs  %.0f connects/s\n",
			p.Phase, p.Clients, p.Connected, p.Failed, p.SessionPresent, p.Seconds, p.PerSecond)
		if p.FirstError != "" {
			fmt.Fprintf(out, "%-30s first error: %s\n", "", p.FirstError)
		}
	}
	return nil
}

// connectAll connects every client (client i to broker (i+shift) mod
// count), parallel at a time, and keeps the connections in conns.
func connectAll(ctx context.Context, o mqttOptions, brokers []string, conns []net.Conn, shift int, name string) mqttPhase {
	var next, present, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range o.parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(conns) || ctx.Err() != nil {
					return
				}
				addr := brokers[(i+shift)%len(brokers)]
				c, sp, err := mqttConnect(ctx, addr, fmt.Sprintf("%s%d", o.prefix, i), o.clean, o.timeout)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				conns[i] = c
				if sp {
					present.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	p := mqttPhase{Phase: name, Clients: len(conns), Failed: int(failed.Load()), SessionPresent: int(present.Load()), Seconds: secs}
	p.Connected = p.Clients - p.Failed
	p.PerSecond = float64(p.Connected) / secs
	if e, ok := firstErr.Load().(string); ok {
		p.FirstError = e
	}
	return p
}

// mqttConnect opens a connection, sends an MQTT 3.1.1 CONNECT and reads
// the CONNACK: whether a session was present, or the refusal.
func mqttConnect(ctx context.Context, addr, clientID string, clean bool, timeout time.Duration) (net.Conn, bool, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	var flags byte
	if clean {
		flags = 0x02
	}
	// Keep alive 3600 s: longer than any run, so the idle connection stays.
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, flags, 0x0e, 0x10, byte(len(clientID) >> 8), byte(len(clientID))}
	body = append(body, clientID...)
	pkt := append([]byte{0x10}, remainingLength(len(body))...)
	pkt = append(pkt, body...)
	if _, err := c.Write(pkt); err != nil {
		_ = c.Close()
		return nil, false, err
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		_ = c.Close()
		return nil, false, fmt.Errorf("%s: CONNACK: %w", addr, err)
	}
	if ack[0] != 0x20 || ack[1] != 2 || ack[3] != 0 {
		_ = c.Close()
		return nil, false, fmt.Errorf("%s: CONNACK %x: refused", addr, ack)
	}
	_ = c.SetDeadline(time.Time{})
	return c, ack[2]&1 == 1, nil
}

// remainingLength encodes MQTT's variable-length remaining length.
func remainingLength(n int) []byte {
	var out []byte
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			return out
		}
	}
}
