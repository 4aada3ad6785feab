package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/client"
)

// DefaultEndpoints is the cluster `make run` starts.
const DefaultEndpoints = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"

type app struct {
	endpoints  string
	timeout    time.Duration
	tlsDir     string
	token      string
	output     string
	out        io.Writer
	errOut     io.Writer // progress lines
	progressed string    // the last progress line (progress prints changes)
	cli        *client.Client
}

func main() {
	a := &app{out: os.Stdout, errOut: os.Stderr}
	if err := a.execute(a.root()); err != nil {
		fmt.Fprintln(os.Stderr, "metactl:", oneLine(err))
		os.Exit(1)
	}
}

// oneLine renders an error as one line: the gRPC message without the
// "rpc error: code = ..." prefix, plus whether the outcome is unknown.
func oneLine(err error) string {
	msg := err.Error()
	if st, ok := status.FromError(err); ok {
		msg = fmt.Sprintf("%s (%s)", st.Message(), st.Code())
	}
	if client.IsUnknown(err) {
		msg = "outcome unknown, the write may or may not have been applied: " + msg
	}
	if status.Code(err) == codes.Unavailable && strings.Contains(msg, "server preface") {
		msg += " (the node closed the connection before speaking HTTP/2: it probably requires TLS; give --tls-dir)"
	}
	return strings.ReplaceAll(msg, "\n", " ")
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:           "metactl",
		Short:         "Command-line client of a meta cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if a.output != "text" && a.output != "json" {
				return fmt.Errorf("--output: %q is not text or json", a.output)
			}
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.endpoints, "endpoints", DefaultEndpoints, "comma-separated host:port of cluster nodes")
	pf.StringVar(&a.tlsDir, "tls-dir", "", "folder holding ca.crt, client.crt and client.key: connect with mutual TLS (ca.crt alone with --token)")
	pf.StringVar(&a.token, "token", os.Getenv("META_TOKEN"), "bearer token of a cluster started with --auth-tokens (default $META_TOKEN); needs --tls-dir")
	pf.DurationVar(&a.timeout, "timeout", 10*time.Second, "deadline of the whole command")
	pf.StringVarP(&a.output, "output", "o", "text", "text or json")
	root.AddCommand(a.kvCommands()...)
	root.AddCommand(a.offsetsCommand(), a.statusCommand(), a.memberCommand(), a.leaderCommand(), a.groupCommand(), a.nodeCommand(),
		a.certsCommand(), a.authCommand(), a.snapshotCommand(), a.alarmCommand())
	addMerged(root, a.controllerCommands()...)
	addMerged(root, a.brokerAPICommands()...)
	return root
}

// execute runs the command line and closes the client it opened, whether
// the command succeeded or not.
func (a *app) execute(root *cobra.Command) error {
	err := root.Execute()
	if a.cli != nil {
		_ = a.cli.Close()
		a.cli = nil
	}
	return err
}

func (a *app) client() (*client.Client, error) {
	if a.cli != nil {
		return a.cli, nil
	}
	var eps []string
	for _, e := range strings.Split(a.endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	tlsCfg, err := client.LoadTLSDir(a.tlsDir)
	if err != nil {
		return nil, fmt.Errorf("--tls-dir: %w", err)
	}
	c, err := client.New(client.Config{Endpoints: eps, RequestTimeout: a.timeout, TLS: tlsCfg, Token: a.token})
	if err != nil {
		return nil, err
	}
	a.cli = c
	return c, nil
}

func (a *app) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), a.timeout)
}

// emit prints a response as JSON when asked, else runs text.
func (a *app) emit(msg proto.Message, text func()) error {
	if a.output == "json" {
		b, err := protojson.MarshalOptions{EmitUnpopulated: true, Multiline: true}.Marshal(msg)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(a.out, string(b))
		return err
	}
	text()
	return nil
}

// page is a list response that may have more pages, the next one starting
// after its NextStartAfter (of type C).
type page[C any] interface {
	proto.Message
	GetMore() bool
	GetNextStartAfter() C
}

// pages prints, with the client and a context bounded by --timeout, the
// page call returns, and with all every following one: startAfter points
// at the request's StartAfter, which each page moves past itself.
func pages[R page[C], C any](a *app, all bool, startAfter *C, call func(context.Context, *client.Client) (R, error), text func(R)) error {
	return a.with(func(ctx context.Context, c *client.Client) error {
		for {
			resp, err := call(ctx, c)
			if err != nil {
				return err
			}
			if err := a.emit(resp, func() { text(resp) }); err != nil {
				return err
			}
			if !all || !resp.GetMore() {
				return nil
			}
			*startAfter = resp.GetNextStartAfter()
		}
	})
}

func (a *app) emitJSON(v any, text func()) error {
	if a.output == "json" {
		enc := json.NewEncoder(a.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text()
	return nil
}

var errNotFound = errors.New("not found")

// notFound is the error of a response that found nothing (missing): what,
// formatted with args, then ": not found".
func notFound(missing bool, what string, args ...any) error {
	if !missing {
		return nil
	}
	return fmt.Errorf(what+": %w", append(args, errNotFound)...)
}

// with runs fn with the client and a context bounded by --timeout.
func (a *app) with(fn func(ctx context.Context, c *client.Client) error) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	ctx, cancel := a.ctx()
	defer cancel()
	return fn(ctx, c)
}

// show runs call with the client and a context bounded by --timeout and
// prints the response it returns: as JSON when asked, else with text.
func show[R proto.Message](a *app, call func(context.Context, *client.Client) (R, error), text func(R)) error {
	return showOr(a, call, nil, text)
}

// showOr is show whose text output first asks refuse whether the response
// is a failure to report as the command's error (a key not found, a compare
// that failed); JSON output prints the response as it is.
func showOr[R proto.Message](a *app, call func(context.Context, *client.Client) (R, error), refuse func(R) error, text func(R)) error {
	return a.with(func(ctx context.Context, c *client.Client) error {
		resp, err := call(ctx, c)
		if err != nil {
			return err
		}
		if refuse != nil && a.output == "text" {
			if err := refuse(resp); err != nil {
				return err
			}
		}
		return a.emit(resp, func() { text(resp) })
	})
}

// noArgs is a subcommand without arguments that shows what call (a client
// method) returns.
func noArgs[R proto.Message](a *app, use, short string, call func(*client.Client, context.Context) (R, error), text func(R)) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return show(a, func(ctx context.Context, c *client.Client) (R, error) { return call(c, ctx) }, text)
		},
	}
}

// optArg is the optional argument i: "" when it is not given.
func optArg(args []string, i int) string {
	if len(args) > i {
		return args[i]
	}
	return ""
}

// table prints header and the lines rows writes, tab-separated, as aligned
// columns.
func (a *app) table(header string, rows func(w io.Writer)) {
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	rows(tw)
	_ = tw.Flush()
}

// pageFlags registers --limit (what: the items a page holds) and --all, the
// flags of a command that lists with pages.
func pageFlags(fs *pflag.FlagSet, limit *uint32, all *bool, what string) {
	fs.Uint32Var(limit, "limit", 0, what+" per page (default 1000, at most 10000)")
	fs.BoolVar(all, "all", false, "follow pages until the end")
}

// staleFlag registers --stale, which reads the local replica.
func staleFlag(fs *pflag.FlagSet, stale *bool) {
	fs.BoolVar(stale, "stale", false, "read the local replica without confirming it is current")
}
