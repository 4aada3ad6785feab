package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/client"
)

// DefaultEndpoints is the cluster `make run` starts.
const DefaultEndpoints = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"

type app struct {
	endpoints string
	timeout   time.Duration
	tlsDir    string
	token     string
	output    string
	out       io.Writer
	errOut    io.Writer // progress lines
	cli       *client.Client
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
		a.certsCommand(), a.authCommand())
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

// page is a list response that may have more pages.
type page interface {
	proto.Message
	GetMore() bool
}

// pages prints the page call returns, and with all every following one:
// next moves the request past a page (to its NextStartAfter).
func pages[R page](a *app, all bool, call func() (R, error), next func(R), text func(R)) error {
	for {
		resp, err := call()
		if err != nil {
			return err
		}
		if err := a.emit(resp, func() { text(resp) }); err != nil {
			return err
		}
		if !all || !resp.GetMore() {
			return nil
		}
		next(resp)
	}
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
