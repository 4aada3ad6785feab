package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// WriteDevCerts makes a development CA in dir (ca.crt, ca.key) and, for
// each id, a member certificate in dir/<id>/ (node.crt, node.key, ca.crt:
// TLSDirFiles) naming meta://member/<id>, valid for a year for loopback
// addresses, and an admin client certificate dir/client.crt, client.key
// naming meta://admin/admin (the layout metactl --tls-dir reads). For
// development and tests, not for production PKI.
func WriteDevCerts(dir string, ids []string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "meta development CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caKeyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: caKeyDER}), 0o600); err != nil {
		return err
	}
	for i, id := range ids {
		if id == "" {
			return fmt.Errorf("tls: ids[%d]: empty member id", i)
		}
		if err := WriteDevCert(dir, "member", id, TLSDirFiles(filepath.Join(dir, id))); err != nil {
			return fmt.Errorf("tls: ids[%d] %q: %w", i, id, err)
		}
	}
	return WriteDevCert(dir, "admin", "admin", ClientFiles(dir))
}

// ClientFiles is where a client's certificate lives in a folder (the
// layout metactl --tls-dir reads): client.crt, client.key, ca.crt.
func ClientFiles(dir string) TLSFiles {
	return TLSFiles{Cert: filepath.Join(dir, "client.crt"), Key: filepath.Join(dir, "client.key"), CA: filepath.Join(dir, "ca.crt")}
}

// WriteDevCert issues, with the development CA in caDir (WriteDevCerts),
// a certificate naming meta://<role>/<name> into files (the CA
// certificate is copied to files.CA), valid for a year for loopback
// addresses, for both server and client use.
func WriteDevCert(caDir, role, name string, files TLSFiles) error {
	if role == "" || name == "" {
		return errors.New("tls: role and name must be set")
	}
	caPEM, err := os.ReadFile(filepath.Join(caDir, "ca.crt"))
	if err != nil {
		return err
	}
	caKeyPEM, err := os.ReadFile(filepath.Join(caDir, "ca.key"))
	if err != nil {
		return err
	}
	cb, _ := pem.Decode(caPEM)
	kb, _ := pem.Decode(caKeyPEM)
	if cb == nil || kb == nil {
		return fmt.Errorf("tls: %s: ca.crt or ca.key holds no PEM block", caDir)
	}
	caCert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return err
	}
	caKey, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return err
	}
	u, err := url.Parse("meta://" + role + "/" + name)
	if err != nil {
		return fmt.Errorf("tls: %s/%s: %w", role, name, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		URIs: []*url.URL{u}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:   now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(files.Cert), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(files.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(files.Key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(files.CA, caPEM, 0o644)
}
