package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := command(os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "metabench:", err)
		os.Exit(1)
	}
}

// options are the flags every load command shares, plus the ones of
// particular commands (unused ones keep their defaults).
type options struct {
	target       string
	endpoints    string
	tlsDir       string
	token        string
	clients      int
	conns        int
	noCoalesce   bool
	total        int64
	keySize      int
	valueSize    int
	batch        int
	seed         uint64
	timeout      time.Duration
	output       string
	label        string
	serverPIDs   []int
	maxErrorRate float64
	progress     bool
	cpuProfile   string
	keyPrefix    string
	duration     time.Duration
	series       string

	// get
	keys        int64
	consistency string
	load        bool

	// offsets
	groups      int
	partitions  int
	topic       string
	groupPrefix string

	// sessions, sessions-list
	brokerID      string
	expirySeconds int64
}

func defaultOptions() options {
	return options{
		target:        targetMeta,
		clients:       16,
		total:         10000,
		keySize:       32,
		valueSize:     256,
		batch:         1,
		seed:          1,
		timeout:       10 * time.Second,
		output:        "text",
		maxErrorRate:  0.01,
		progress:      true,
		keys:          10000,
		consistency:   "linearizable",
		load:          true,
		groups:        100,
		partitions:    100,
		topic:         "bench",
		groupPrefix:   "bench-group-",
		brokerID:      "bench-broker",
		expirySeconds: 7 * 24 * 3600,
	}
}

// wantConsistency adds a problem naming --consistency unless it is
// linearizable or stale.
func wantConsistency(errs *[]error, consistency string) {
	if consistency != "linearizable" && consistency != "stale" {
		*errs = append(*errs, fmt.Errorf("--consistency: %q is not linearizable or stale", consistency))
	}
}

// wantFlag adds the problem of flag to errs when bad: "FLAG: V, want
// WANT", v being the flag's value and want what it should be.
func wantFlag(errs *[]error, bad bool, flag string, v any, want string) {
	if bad {
		*errs = append(*errs, fmt.Errorf("%s: %v, want %s", flag, v, want))
	}
}

// Validate reports every problem of the shared flags at once; commands
// add their own checks.
func (o options) Validate() error {
	var errs []error
	if o.target != targetMeta && o.target != targetEtcd {
		errs = append(errs, fmt.Errorf("--target: %q is not %s or %s", o.target, targetMeta, targetEtcd))
	}
	if o.endpoints != "" && len(splitEndpoints(o.endpoints)) == 0 {
		errs = append(errs, errors.New("--endpoints: no endpoint given"))
	}
	wantFlag(&errs, o.clients < 1, "--clients", o.clients, "at least 1")
	wantFlag(&errs, o.conns < 0, "--conns", o.conns, "0 (one per 16 clients) or more")
	wantFlag(&errs, o.total < 1, "--total", o.total, "at least 1")
	wantFlag(&errs, o.keySize < 1, "--key-size", o.keySize, "at least 1")
	wantFlag(&errs, o.valueSize < 0, "--value-size", o.valueSize, "0 or more")
	wantFlag(&errs, o.batch < 1, "--batch", o.batch, "at least 1")
	wantFlag(&errs, o.timeout <= 0, "--timeout", o.timeout, "more than 0")
	if o.output != "text" && o.output != "json" {
		errs = append(errs, fmt.Errorf("--output: %q is not text or json", o.output))
	}
	wantFlag(&errs, o.duration < 0, "--duration", o.duration, "0 (until --total) or more")
	wantFlag(&errs, o.maxErrorRate < 0 || o.maxErrorRate > 1, "--max-error-rate", o.maxErrorRate, "0 to 1")
	return errors.Join(errs...)
}

// connCount is --conns, or one connection per 16 clients.
func (o options) connCount() int {
	if o.conns > 0 {
		return min(o.conns, o.clients)
	}
	return (o.clients + 15) / 16
}

func (o options) endpointList() []string {
	if o.endpoints != "" {
		return splitEndpoints(o.endpoints)
	}
	if o.target == targetEtcd {
		return splitEndpoints(defaultEtcdEndpoints)
	}
	return splitEndpoints(defaultMetaEndpoints)
}

func command(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "metabench",
		Short: "Load generator for a meta cluster (or an etcd cluster, for comparison)",
		Long: "metabench drives a meta cluster, or with --target etcd an etcd cluster, with\n" +
			"concurrent clients and reports throughput and latency percentiles.\n" +
			"See `go doc github.com/metamq/meta/cmd/metabench` for the workloads and the JSON format.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		loadCommand(stdout, stderr, "put", "Write unique keys, one per call",
			func(f flagSet, o *options) {
				f.StringVar(&o.keyPrefix, "key-prefix", "bench/put/", "prefix of the keys written")
			}, newPutWorkload),
		loadCommand(stdout, stderr, "get", "Load a key space, then read random keys from it, one per call",
			func(f flagSet, o *options) {
				f.StringVar(&o.keyPrefix, "key-prefix", "bench/get/", "prefix of the keys loaded and read")
				f.Int64Var(&o.keys, "keys", o.keys, "size of the key space read")
				f.StringVar(&o.consistency, "consistency", o.consistency, "linearizable or stale (etcd: serializable)")
				f.BoolVar(&o.load, "load", o.load, "write the key space before reading (false: reuse an earlier load)")
			}, newGetWorkload),
		loadCommand(stdout, stderr, "offsets", "Commit consumer offsets, --batch partitions per call",
			func(f flagSet, o *options) { offsetFlags(f, o) }, newOffsetsWorkload),
		loadCommand(stdout, stderr, "offsets-fetch", "Commit every consumer offset, then fetch --batch partitions of a random group per call",
			func(f flagSet, o *options) {
				offsetFlags(f, o)
				f.StringVar(&o.consistency, "consistency", o.consistency, "linearizable or stale (etcd: serializable)")
				f.BoolVar(&o.load, "load", o.load, "commit every offset before fetching (false: reuse an earlier load with the same flags)")
			}, newOffsetsFetchWorkload),
		loadCommand(stdout, stderr, "sessions", "Create new MQTT sessions, --batch per PutSessions call",
			func(f flagSet, o *options) {
				o.batch = 100
				f.StringVar(&o.keyPrefix, "key-prefix", defaultSessionPrefix, "prefix of the client ids written")
				sessionFlags(f, o)
			}, newSessionsWorkload),
		loadCommand(stdout, stderr, "sessions-list", "Page through sessions an earlier run wrote, --batch per ListSessions page",
			func(f flagSet, o *options) {
				o.batch = 1000
				f.StringVar(&o.keyPrefix, "key-prefix", defaultSessionPrefix, "prefix of the client ids listed")
				f.StringVar(&o.consistency, "consistency", o.consistency, "linearizable or stale (etcd: serializable)")
				f.BoolVar(&o.load, "load", o.load, "write the --total sessions before listing (false: list what `metabench sessions` wrote with the same --key-prefix, --key-size and --total)")
				sessionFlags(f, o)
			}, newSessionsListWorkload),
		compareCommand(stdout),
		mqttCommand(stdout),
	)
	return root
}

// offsetFlags are the offsets workloads' flags.
func offsetFlags(f flagSet, o *options) {
	f.IntVar(&o.groups, "groups", o.groups, "consumer groups")
	f.IntVar(&o.partitions, "partitions", o.partitions, "partitions of the topic each group commits")
	f.StringVar(&o.topic, "topic", o.topic, "topic name")
	f.StringVar(&o.groupPrefix, "group-prefix", o.groupPrefix, "prefix of the consumer group names")
}

// flagSet is the part of pflag.FlagSet the commands use.
type flagSet interface {
	StringVar(p *string, name, value, usage string)
	IntVar(p *int, name string, value int, usage string)
	Int64Var(p *int64, name string, value int64, usage string)
	BoolVar(p *bool, name string, value bool, usage string)
}

// defaultSessionPrefix starts the client ids of the sessions workloads.
const defaultSessionPrefix = "bench-session-"

// sessionFlags are the flags that shape a written session.
func sessionFlags(f flagSet, o *options) {
	f.StringVar(&o.brokerID, "broker", o.brokerID, "broker id the sessions are held by")
	f.Int64Var(&o.expirySeconds, "expiry-seconds", o.expirySeconds,
		"session expiry interval in seconds (counts only once a client disconnects; 4294967295: never)")
}

func newPutWorkload(o options) (workload, error) {
	if o.batch != 1 {
		return nil, fmt.Errorf("--batch: %d, but put sends one key per call (the KV API has no batch put); use 1", o.batch)
	}
	ks := keySpace{prefix: o.keyPrefix, size: o.keySize}
	if err := ks.validate(o.total); err != nil {
		return nil, err
	}
	return &putWorkload{keys: ks}, nil
}

func newGetWorkload(o options) (workload, error) {
	var errs []error
	if o.batch != 1 {
		errs = append(errs, fmt.Errorf("--batch: %d, but get reads one key per call (the KV API has no batch get); use 1", o.batch))
	}
	wantConsistency(&errs, o.consistency)
	wantFlag(&errs, o.keys < 1, "--keys", o.keys, "at least 1")
	ks := keySpace{prefix: o.keyPrefix, size: o.keySize}
	if err := ks.validate(o.keys); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &getWorkload{keys: ks, reads: reads{n: o.keys, stale: o.consistency == "stale", load: o.load}}, nil
}

// newOffsetSpace checks the offsets workloads' flags.
func newOffsetSpace(o options) (offsetSpace, []error) {
	var errs []error
	wantFlag(&errs, o.groups < 1, "--groups", o.groups, "at least 1")
	wantFlag(&errs, o.partitions < 1, "--partitions", o.partitions, "at least 1")
	if o.batch > o.partitions {
		errs = append(errs, fmt.Errorf("--batch: %d is more than --partitions %d; a call touches each partition at most once", o.batch, o.partitions))
	}
	if o.topic == "" {
		errs = append(errs, errors.New("--topic: empty"))
	}
	return offsetSpace{groups: o.groups, partitions: o.partitions, topic: o.topic, prefix: o.groupPrefix}, errs
}

func newOffsetsWorkload(o options) (workload, error) {
	space, errs := newOffsetSpace(o)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &offsetsWorkload{offsetSpace: space}, nil
}

func newOffsetsFetchWorkload(o options) (workload, error) {
	space, errs := newOffsetSpace(o)
	wantConsistency(&errs, o.consistency)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &offsetsFetchWorkload{offsetSpace: space,
		reads: reads{n: int64(space.groups) * int64(space.partitions), stale: o.consistency == "stale", load: o.load}}, nil
}

func newSessionShape(o options) (sessionShape, []error) {
	var errs []error
	expiry, err := parseExpiry(o.expirySeconds)
	if err != nil {
		errs = append(errs, err)
	}
	if o.keySize > metapb.MaxClientIDBytes {
		errs = append(errs, fmt.Errorf("--key-size: %d, but a client id has at most %d bytes", o.keySize, metapb.MaxClientIDBytes))
	}
	if len(o.brokerID) > metapb.MaxBrokerIDBytes {
		errs = append(errs, fmt.Errorf("--broker: %d bytes, at most %d", len(o.brokerID), metapb.MaxBrokerIDBytes))
	}
	if o.valueSize > metapb.MaxSessionStateBytes {
		errs = append(errs, fmt.Errorf("--value-size: %d, but a session state has at most %d bytes", o.valueSize, metapb.MaxSessionStateBytes))
	}
	ks := keySpace{prefix: o.keyPrefix, size: o.keySize}
	if err := ks.validate(o.total); err != nil {
		errs = append(errs, err)
	}
	return sessionShape{ids: ks, brokerID: o.brokerID, expirySeconds: expiry}, errs
}

func newSessionsWorkload(o options) (workload, error) {
	shape, errs := newSessionShape(o)
	if o.batch > metapb.MaxBatchEntries {
		errs = append(errs, fmt.Errorf("--batch: %d, but a PutSessions call carries at most %d sessions", o.batch, metapb.MaxBatchEntries))
	} else if b := shape.batchBytes(o.batch, o.valueSize); b > metapb.MaxBatchBytes {
		errs = append(errs, fmt.Errorf("--batch: %d sessions of %d bytes make %d bytes, but a call carries at most %d; use --batch %d or less",
			o.batch, o.valueSize, b, metapb.MaxBatchBytes, shape.maxBatch(o.batch, o.valueSize)))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &sessionsWorkload{shape: shape, batch: o.batch}, nil
}

func newSessionsListWorkload(o options) (workload, error) {
	shape, errs := newSessionShape(o)
	if o.batch > metapb.MaxListLimit {
		errs = append(errs, fmt.Errorf("--batch: %d, but a ListSessions page holds at most %d sessions", o.batch, metapb.MaxListLimit))
	}
	wantConsistency(&errs, o.consistency)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &sessionsListWorkload{shape: shape, batch: o.batch, reads: reads{n: o.total, stale: o.consistency == "stale", load: o.load}}, nil
}

// loadCommand builds a load command: the command's own flags (extra,
// which may also change the shared flags' defaults), the shared flags,
// and a constructor of its workload.
func loadCommand(stdout, stderr io.Writer, name, short string, extra func(flagSet, *options),
	build func(options) (workload, error)) *cobra.Command {
	o := defaultOptions()
	cmd := &cobra.Command{
		Use:   name,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			wl, err := build(o)
			if err != nil {
				return err
			}
			return runLoad(cmd.Context(), name, o, wl, stdout, stderr)
		},
	}
	f := cmd.Flags()
	extra(f, &o)
	f.StringVar(&o.target, "target", o.target, "meta or etcd (the same load against etcd, for comparison)")
	f.StringVar(&o.endpoints, "endpoints", "", "comma-separated host:port (default "+defaultMetaEndpoints+" for meta, "+defaultEtcdEndpoints+" for etcd)")
	f.StringVar(&o.tlsDir, "tls-dir", "", "meta: folder holding ca.crt, client.crt and client.key (metactl certs): connect with mutual TLS (ca.crt alone with --token)")
	f.StringVar(&o.token, "token", os.Getenv("META_TOKEN"), "meta: bearer token of a cluster started with --auth-tokens (default $META_TOKEN); needs --tls-dir")
	f.IntVar(&o.clients, "clients", o.clients, "concurrent workers, each with one call in flight")
	f.IntVar(&o.conns, "conns", o.conns, "client connections the workers share (0: one per 16 workers)")
	f.BoolVar(&o.noCoalesce, "no-coalesce", false, "meta: turn the client's coalescing off (every call its own RPC; default: concurrent calls of a client to one group share batch RPCs)")
	f.Int64Var(&o.total, "total", o.total, "items to send (keys for put and get, offsets for offsets, sessions for sessions and sessions-list)")
	f.IntVar(&o.keySize, "key-size", o.keySize, "key size in bytes (client id size for sessions)")
	f.IntVar(&o.valueSize, "value-size", o.valueSize, "value size in bytes (session state size for sessions)")
	f.IntVar(&o.batch, "batch", o.batch, "items per call where the API batches (offsets, sessions; the page size of sessions-list); put and get need 1")
	f.Uint64Var(&o.seed, "seed", o.seed, "seed of values and of random key choices")
	f.DurationVar(&o.timeout, "timeout", o.timeout, "deadline of one call")
	f.StringVarP(&o.output, "output", "o", o.output, "text or json (one line, for scripts and metabench compare)")
	f.StringVar(&o.label, "label", "", "name of this run's column in metabench compare (default the target)")
	f.IntSliceVar(&o.serverPIDs, "server-pids", nil, "comma-separated process ids of the cluster's servers on this machine: report their CPU time over the timed phase (server_cpu_seconds; compare's cpu us/op)")
	f.Float64Var(&o.maxErrorRate, "max-error-rate", o.maxErrorRate, "fraction of calls that may fail before the exit status is 1")
	f.BoolVar(&o.progress, "progress", o.progress, "print a progress line on stderr once a second")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write metabench's own CPU profile of the timed phase to this file")
	f.DurationVar(&o.duration, "duration", 0, "end the timed phase after this long even if --total is not reached (0: run until --total)")
	f.StringVar(&o.series, "series", "", "write throughput over time to this CSV file, one line a second ("+seriesHeader+")")
	return cmd
}

// runLoad opens the connections, runs the workload and prints the result.
func runLoad(ctx context.Context, name string, o options, wl workload, stdout, stderr io.Writer) error {
	eps := o.endpointList()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	tlsCfg, err := client.LoadTLSDir(o.tlsDir)
	if err != nil {
		return fmt.Errorf("--tls-dir: %w", err)
	}
	conns, err := openConns(o.target, o.connCount(), dialConfig{endpoints: eps, timeout: o.timeout, log: log, tls: tlsCfg, token: o.token, noCoalesce: o.noCoalesce})
	if err != nil {
		return err
	}
	defer closeConns(conns)
	pingCtx, cancel := context.WithTimeout(ctx, max(o.timeout, 5*time.Second))
	err = pingAll(pingCtx, conns)
	cancel()
	if err != nil {
		return err
	}
	cfg := runConfig{
		cpuProfile:   o.cpuProfile,
		label:        name,
		clients:      o.clients,
		total:        o.total,
		batch:        o.batch,
		timeout:      o.timeout,
		seed:         o.seed,
		valueSize:    o.valueSize,
		maxErrorRate: o.maxErrorRate,
		duration:     o.duration,
		serverPIDs:   o.serverPIDs,
	}
	if o.series != "" {
		f, err := os.Create(o.series)
		if err != nil {
			return fmt.Errorf("--series: %w", err)
		}
		defer f.Close()
		cfg.series = f
	}
	if o.progress {
		cfg.progress = stderr
		cfg.tty = isTerminal(stderr)
	}
	res, runErr := run(ctx, wl, conns, cfg)
	if res == nil {
		return runErr
	}
	res.Command, res.Target, res.Label, res.Endpoints = name, o.target, o.label, eps
	res.Clients, res.Conns, res.Batch, res.Seed = o.clients, len(conns), o.batch, o.seed
	res.KeySize, res.ValueSize, res.Unit, res.Total = o.keySize, o.valueSize, wl.unit(), o.total
	if !wl.writes() {
		res.Consistency = o.consistency
	}
	res.NoCoalesce = o.noCoalesce && o.target == "meta"
	if name == "offsets" {
		res.KeySize, res.ValueSize = 0, 0 // not used by the workload
	}
	if o.output == "json" {
		err = res.writeJSON(stdout)
	} else {
		err = res.writeText(stdout)
	}
	return errors.Join(runErr, err)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func compareCommand(stdout io.Writer) *cobra.Command {
	var median bool
	cmd := &cobra.Command{
		Use:   "compare RESULT.json...",
		Short: "Print results written with --output json side by side (- reads stdin)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var all []*Result
			for _, name := range args {
				rs, err := readResultsFile(cmd.InOrStdin(), name)
				if err != nil {
					return err
				}
				all = append(all, rs...)
			}
			if len(all) == 0 {
				return errors.New("compare: no results in the files given")
			}
			return writeComparison(stdout, all, median)
		},
	}
	cmd.Flags().BoolVar(&median, "median", false, "summarise several results of one workload and column (repetitions) by their medians, with the range and count (default: the last one counts)")
	return cmd
}

func readResultsFile(stdin io.Reader, name string) ([]*Result, error) {
	if name == "-" {
		return readResults(stdin, "stdin")
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readResults(f, name)
}
