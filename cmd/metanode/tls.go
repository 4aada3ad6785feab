package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/metamq/meta/rpc/server"
	"github.com/metamq/meta/rpc/transport"
)

// loadTLS returns the certificate reloader for --tls-dir or
// --tls-cert/--tls-key/--tls-ca, or nil when TLS is off (none given).
func loadTLS(files transport.TLSFiles, dir string) (*transport.CertReloader, error) {
	some := files.Cert != "" || files.Key != "" || files.CA != ""
	if dir != "" && some {
		return nil, errors.New("--tls-dir: give it or --tls-cert/--tls-key/--tls-ca, not both")
	}
	if dir != "" {
		files = transport.TLSDirFiles(dir)
	} else if !some {
		return nil, nil
	}
	if files.Cert == "" || files.Key == "" || files.CA == "" {
		return nil, errors.New("--tls-cert, --tls-key and --tls-ca: give all three (or --tls-dir)")
	}
	return transport.NewCertReloader(files)
}

// loadAuth returns the public API's authentication for --auth (nil when
// off). It needs TLS: certificates and tokens would otherwise cross the
// network in the clear.
func loadAuth(on bool, tokensFile string, tls bool) (*server.Auth, error) {
	if !on {
		if tokensFile != "" {
			return nil, errors.New("--auth-tokens: needs --auth")
		}
		return nil, nil
	}
	if !tls {
		return nil, errors.New("--auth: needs TLS (--tls-dir, or --tls-cert/--tls-key/--tls-ca): certificates and tokens would cross the network in the clear")
	}
	a := &server.Auth{}
	if tokensFile != "" {
		t, err := server.LoadTokens(tokensFile)
		if err != nil {
			return nil, fmt.Errorf("--auth-tokens: %w", err)
		}
		a.Tokens = t
	}
	return a, nil
}

// warnPlaintext warns, loudly, when a node without TLS listens beyond
// loopback: anyone who reaches the port can read and write everything,
// and raft traffic is unauthenticated.
func warnPlaintext(log *slog.Logger, listen string) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return
	}
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		return
	}
	log.Warn("!!! NO TLS: this node listens beyond loopback in plaintext: anyone who reaches " + listen +
		" can read and write every key, change membership and forge raft messages; run with --tls-dir and --auth (README: Running securely) !!!")
}
