package server

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/metapb"
)

// Client authentication and roles. With Auth installed (AuthOptions),
// every call of the public API (meta.v1) must name its caller, by a
// verified client certificate or by a bearer token, and the caller's role
// must allow the method (methodPerms; a method missing from the table is
// refused). Raft and peer calls are left to transport.PeerAuth; the
// health service stays open.
//
// A certificate names its caller with a URI SAN meta://<role>/<name>:
// meta://member/<id> (a member of the cluster: everything, which is how
// calls another node forwarded arrive, already authorised there),
// meta://admin/<name>, meta://broker/<broker id>, meta://reader/<name>.
// A token is sent as gRPC metadata "authorization: Bearer <token>"; nodes
// hold only its SHA-256 (LoadTokens).

// Role is what a caller may do.
type Role string

const (
	// RoleMember is a member of the cluster: forwarded calls.
	RoleMember Role = "member"
	// RoleAdmin may do everything: membership, leader transfer, groups,
	// users and ACLs, besides all a broker may.
	RoleAdmin Role = "admin"
	// RoleBroker may write and read broker data (KV, sessions, wills,
	// retained, offsets, leases, resources other than users, ACLs and
	// brokers), watch, and register, heartbeat and report as itself only.
	RoleBroker Role = "broker"
	// RoleReader may read and watch.
	RoleReader Role = "reader"
)

// roleURIPrefix starts the URI SAN that names a caller's role and name.
const roleURIPrefix = "meta://"

// Principal is an authenticated caller.
type Principal struct {
	Role Role
	Name string
}

func (p Principal) String() string { return string(p.Role) + " " + p.Name }

// perm is what a method needs.
type perm int

const (
	permRead     perm = iota + 1 // reader, broker, admin
	permWrite                    // broker, admin
	permBroker                   // a broker as itself (the request's broker_id), admin
	permResource                 // resource writes: admin; broker for topics, connectors, schemas
	permAdmin                    // admin
)

// methodPerms is every public method and what it needs. A test checks it
// names every method of every meta.v1 service, and nothing else.
var methodPerms = map[string]perm{
	"/meta.v1.Cluster/Status":             permRead,
	"/meta.v1.Cluster/Members":            permRead,
	"/meta.v1.Cluster/AddMember":          permAdmin,
	"/meta.v1.Cluster/RemoveMember":       permAdmin,
	"/meta.v1.Cluster/TransferLeader":     permAdmin,
	"/meta.v1.Cluster/StateHash":          permAdmin,
	"/meta.v1.Cluster/Alarms":             permAdmin,
	"/meta.v1.Cluster/DrainMember":        permAdmin,
	"/meta.v1.Cluster/MoveReplica":        permAdmin,
	"/meta.v1.Cluster/SplitGroup":         permAdmin,
	"/meta.v1.Cluster/AbortSplit":         permAdmin,
	"/meta.v1.Cluster/ListGroups":         permRead,
	"/meta.v1.Cluster/ListNodes":          permRead,
	"/meta.v1.Cluster/WatchDirectory":     permRead,
	"/meta.v1.Cluster/Backup":             permAdmin,
	"/meta.v1.Controller/RegisterBroker":  permBroker,
	"/meta.v1.Controller/Heartbeat":       permBroker,
	"/meta.v1.Controller/ReportConnector": permBroker,
	"/meta.v1.Controller/ListBrokers":     permRead,
	"/meta.v1.Controller/ListAssignments": permRead,
	"/meta.v1.Controller/Status":          permRead,
	"/meta.v1.KV/Put":                     permWrite,
	"/meta.v1.KV/Get":                     permRead,
	"/meta.v1.KV/Delete":                  permWrite,
	"/meta.v1.KV/CompareAndSwap":          permWrite,
	"/meta.v1.KV/List":                    permRead,
	"/meta.v1.KV/MultiPut":                permWrite,
	"/meta.v1.KV/MultiGet":                permRead,
	"/meta.v1.KV/Txn":                     permWrite,
	"/meta.v1.Leases/Grant":               permWrite,
	"/meta.v1.Leases/KeepAlive":           permWrite,
	"/meta.v1.Leases/Revoke":              permWrite,
	"/meta.v1.Leases/TimeToLive":          permRead,
	"/meta.v1.Metadata/Create":            permResource,
	"/meta.v1.Metadata/Update":            permResource,
	"/meta.v1.Metadata/Delete":            permResource,
	"/meta.v1.Metadata/Get":               permRead,
	"/meta.v1.Metadata/List":              permRead,
	"/meta.v1.Sessions/Put":               permWrite,
	"/meta.v1.Sessions/Delete":            permWrite,
	"/meta.v1.Sessions/Get":               permRead,
	"/meta.v1.Sessions/List":              permRead,
	"/meta.v1.Wills/Put":                  permWrite,
	"/meta.v1.Wills/Delete":               permWrite,
	"/meta.v1.Wills/Get":                  permRead,
	"/meta.v1.Wills/ListDue":              permRead,
	"/meta.v1.Wills/Claim":                permWrite,
	"/meta.v1.Wills/Complete":             permWrite,
	"/meta.v1.Retained/Set":               permWrite,
	"/meta.v1.Retained/Get":               permRead,
	"/meta.v1.Retained/List":              permRead,
	"/meta.v1.Offsets/Commit":             permWrite,
	"/meta.v1.Offsets/Fetch":              permRead,
	"/meta.v1.Offsets/DeleteGroup":        permWrite,
	"/meta.v1.Watch/Watch":                permRead,
}

// Auth authenticates public calls and checks their role.
type Auth struct {
	// Tokens maps the hex SHA-256 of a bearer token to its principal
	// (LoadTokens).
	Tokens map[string]Principal
	// IsMember reports whether id is a current member (or one being
	// added): a member certificate of a removed node is refused.
	IsMember func(id string) bool
}

// AuthOptions are the interceptors of a: put them before ServerOptions,
// so that a call is refused before it is checked, served or forwarded.
func AuthOptions(a *Auth) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if !public(info.FullMethod) {
				return h(ctx, req)
			}
			if err := a.check(ctx, info.FullMethod, req); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if !public(info.FullMethod) {
				return h(srv, ss)
			}
			// Streams of the public API carry nothing a role
			// depends on (watches are reads): checked at the start.
			if err := a.check(ss.Context(), info.FullMethod, nil); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}

// check authenticates ctx's caller and authorises method with req.
func (a *Auth) check(ctx context.Context, method string, req any) error {
	p, err := a.authenticate(ctx)
	if err != nil {
		return err
	}
	return authorize(p, method, req)
}

// authenticate finds the caller: a verified client certificate naming a
// role, else a bearer token.
func (a *Auth) authenticate(ctx context.Context) (Principal, error) {
	if pr, ok := peer.FromContext(ctx); ok {
		if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
			leaf := ti.State.VerifiedChains[0][0]
			for _, u := range leaf.URIs {
				// meta://<role>/<name>, read without formatting the URL
				// again (this runs on every call).
				if u.Scheme != "meta" {
					continue
				}
				p, ok := principal(u.Host, strings.TrimPrefix(u.Path, "/"))
				if !ok {
					continue
				}
				if p.Role == RoleMember && (a.IsMember == nil || !a.IsMember(p.Name)) {
					return Principal{}, status.Errorf(codes.PermissionDenied, "meta: certificate names member %q, not a member of this cluster", p.Name)
				}
				return p, nil
			}
			return Principal{}, status.Errorf(codes.Unauthenticated, "meta: client certificate %q names no role (want a URI SAN %s<member|admin|broker|reader>/<name>)", leaf.Subject.CommonName, roleURIPrefix)
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if vs := md.Get("authorization"); len(vs) > 0 {
		tok, ok := strings.CutPrefix(vs[0], "Bearer ")
		if !ok {
			return Principal{}, status.Error(codes.Unauthenticated, `meta: authorization metadata: want "Bearer <token>"`)
		}
		if p, ok := a.Tokens[HashToken(tok)]; ok {
			return p, nil
		}
		return Principal{}, status.Error(codes.Unauthenticated, "meta: bearer token not known to this cluster")
	}
	if plantedOpenAuth() {
		return Principal{Role: RoleAdmin, Name: "anonymous"}, nil
	}
	return Principal{}, status.Error(codes.Unauthenticated,
		"meta: authentication required: present a client certificate (metactl --tls-dir) or a bearer token (metactl --token)")
}

// parsePrincipal reads "meta://<role>/<name>".
func parsePrincipal(uri string) (Principal, bool) {
	rest, ok := strings.CutPrefix(uri, roleURIPrefix)
	if !ok {
		return Principal{}, false
	}
	role, name, ok := strings.Cut(rest, "/")
	if !ok {
		return Principal{}, false
	}
	return principal(role, name)
}

// principal is role and name as a Principal, if role is one.
func principal(role, name string) (Principal, bool) {
	if name == "" {
		return Principal{}, false
	}
	switch r := Role(role); r {
	case RoleMember, RoleAdmin, RoleBroker, RoleReader:
		return Principal{Role: r, Name: name}, true
	}
	return Principal{}, false
}

// authorize checks that p may call method with req (nil for streams).
func authorize(p Principal, method string, req any) error {
	need, ok := methodPerms[method]
	if !ok {
		return status.Errorf(codes.PermissionDenied, "meta: %s is in no role's permissions", method)
	}
	deny := func(why string) error {
		return status.Errorf(codes.PermissionDenied, "meta: %s may not call %s: %s", p, method, why)
	}
	switch p.Role {
	case RoleMember, RoleAdmin:
		return nil
	case RoleReader:
		if need == permRead {
			return nil
		}
		return deny("readers may only read and watch")
	case RoleBroker:
		switch need {
		case permRead, permWrite:
			return nil
		case permBroker:
			if b, ok := req.(interface{ GetBrokerId() string }); ok && b.GetBrokerId() != p.Name {
				return deny(fmt.Sprintf("a broker acts only as itself (broker_id %q)", b.GetBrokerId()))
			}
			return nil
		case permResource:
			if k := resourceKind(req); k == metapb.ResourceKind_RESOURCE_KIND_USER || k == metapb.ResourceKind_RESOURCE_KIND_ACL ||
				k == metapb.ResourceKind_RESOURCE_KIND_BROKER {
				return deny("users, ACLs and broker resources are written by admins")
			}
			return nil
		}
		return deny("admin only")
	}
	return deny("unknown role")
}

// resourceKind is the kind a Metadata write names.
func resourceKind(req any) metapb.ResourceKind {
	switch r := req.(type) {
	case *metapb.CreateResourceRequest:
		return r.GetResource().GetKind()
	case *metapb.UpdateResourceRequest:
		return r.GetResource().GetKind()
	case *metapb.DeleteResourceRequest:
		return r.GetKind()
	}
	return metapb.ResourceKind_RESOURCE_KIND_UNSPECIFIED
}

// HashToken is how a token is stored: the hex SHA-256 of its bytes.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// LoadTokens reads a token file: one token a line, "<role> <name>
// <sha256 hex of the token>"; blank lines and lines starting with # are
// skipped. An error names the line.
func LoadTokens(path string) (map[string]Principal, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]Principal{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3 {
			return nil, fmt.Errorf("%s:%d: want \"<role> <name> <sha256 hex>\", got %d fields", path, n, len(fields))
		}
		p, ok := parsePrincipal(roleURIPrefix + fields[0] + "/" + fields[1])
		if !ok || p.Role == RoleMember {
			return nil, fmt.Errorf("%s:%d: role %q: want admin, broker or reader", path, n, fields[0])
		}
		if b, err := hex.DecodeString(fields[2]); err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("%s:%d: hash: want 64 hex digits (sha256 of the token)", path, n)
		}
		out[strings.ToLower(fields[2])] = p
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
