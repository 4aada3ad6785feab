package verify

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/metamq/meta/rpc/client"
)

// Conn is a connection to a cluster: the calls sessions record, the
// introspection the final checks use, the recovery probe's calls, and
// Close. *client.Client is one.
type Conn interface {
	API
	Inspector
	Prober
	PlacementReader
	Close() error
}

var _ Conn = (*client.Client)(nil)

// Dialer opens a Conn to endpoints. pinned sends every request to
// endpoints[0] (that node forwards what it cannot serve); otherwise the
// connection routes writes to leaders and spreads reads.
type Dialer func(endpoints []string, pinned bool) (Conn, error)

// ClientDialer dials with the public client. requestTimeout bounds a call
// whose context has no deadline (0: the client's default).
func ClientDialer(log *slog.Logger, requestTimeout time.Duration) Dialer {
	return TLSClientDialer(log, requestTimeout, nil)
}

// TLSClientDialer is ClientDialer over TLS with cfg (nil: plaintext).
func TLSClientDialer(log *slog.Logger, requestTimeout time.Duration, cfg *tls.Config) Dialer {
	return func(endpoints []string, pinned bool) (Conn, error) {
		c, err := client.New(client.Config{Endpoints: endpoints, Pinned: pinned, RequestTimeout: requestTimeout, Logger: log, TLS: cfg})
		if err != nil {
			return nil, err
		}
		return c, nil
	}
}
