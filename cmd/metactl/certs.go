package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/metamq/meta/rpc/server"
	"github.com/metamq/meta/rpc/transport"
)

// certsCommand makes a development CA and certificates.
func (a *app) certsCommand() *cobra.Command {
	var members, clients string
	cmd := &cobra.Command{
		Use:   "certs DIR",
		Short: "Make a development CA and certificates under DIR (not for production PKI)",
		Long: `Makes a development CA (DIR/ca.crt, DIR/ca.key), a member certificate per
--members id in DIR/<id>/ (node.crt, node.key, ca.crt: metanode --tls-dir
DIR/<id>), an admin client certificate DIR/client.crt (metactl --tls-dir DIR),
and per --clients role/name a client certificate in DIR/<role>-<name>/
(metactl --tls-dir DIR/<role>-<name>). Certificates are valid for a year, for
localhost and loopback addresses.`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			dir := args[0]
			var ids []string
			for _, id := range strings.Split(members, ",") {
				if id = strings.TrimSpace(id); id != "" {
					ids = append(ids, id)
				}
			}
			if err := transport.WriteDevCerts(dir, ids); err != nil {
				return err
			}
			for _, c := range strings.Split(clients, ",") {
				if c = strings.TrimSpace(c); c == "" {
					continue
				}
				role, name, ok := strings.Cut(c, "/")
				if !ok || (role != "admin" && role != "broker" && role != "reader") || name == "" {
					return fmt.Errorf("--clients: %q: want role/name, role admin, broker or reader", c)
				}
				if err := transport.WriteDevCert(dir, role, name, transport.ClientFiles(filepath.Join(dir, role+"-"+name))); err != nil {
					return err
				}
			}
			fmt.Fprintf(a.out, "CA, %d member and %d client certificates written under %s\n", len(ids), 1+strings.Count(clients, "/"), dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&members, "members", "n1,n2,n3", "member ids, comma separated")
	cmd.Flags().StringVar(&clients, "clients", "", "more client certificates, role/name comma separated (role admin, broker or reader; a broker's name is its broker id)")
	return cmd
}

// authCommand makes bearer tokens.
func (a *app) authCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "auth", Short: "Bearer tokens for clients that cannot hold certificates"}
	cmd.AddCommand(&cobra.Command{
		Use:   "token ROLE NAME",
		Short: "Make a random token: prints it, then the line to add to the nodes' --auth-tokens file (which holds only its hash)",
		Args:  cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			role, name := args[0], args[1]
			if role != "admin" && role != "broker" && role != "reader" {
				return fmt.Errorf("ROLE: %q: want admin, broker or reader", role)
			}
			if name == "" || strings.ContainsAny(name, " \t/") {
				return fmt.Errorf("NAME: %q: want a name without spaces or slashes", name)
			}
			b := make([]byte, 24)
			if _, err := rand.Read(b); err != nil {
				return err
			}
			tok := base64.RawURLEncoding.EncodeToString(b)
			fmt.Fprintf(a.out, "token: %s\n%s %s %s\n", tok, role, name, server.HashToken(tok))
			return nil
		},
	})
	return cmd
}
