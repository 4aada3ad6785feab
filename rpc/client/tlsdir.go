package client

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
)

// LoadTLSDir reads a client's TLS folder (the layout `metactl certs`
// writes): ca.crt, and client.crt with client.key when present (a client
// that authenticates with a token needs only ca.crt). dir "" is no TLS
// (nil). Errors name the file.
func LoadTLSDir(dir string) (*tls.Config, error) {
	if dir == "" {
		return nil, nil
	}
	caPath := filepath.Join(dir, "ca.crt")
	caPEM, err := os.ReadFile(caPath)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caPath)
	}
	// Nodes are addressed by host:port; their certificates name
	// localhost / 127.0.0.1 (development) or their host names.
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	crt := filepath.Join(dir, "client.crt")
	if _, err := os.Stat(crt); err == nil {
		cert, err := tls.LoadX509KeyPair(crt, filepath.Join(dir, "client.key"))
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
