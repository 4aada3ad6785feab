package server

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/metamq/meta/rpc/metapb"
)

// Every method of every public service has a permission, and the table
// names nothing else: a new method must be given one (until then it is
// refused to everyone, and this test fails).
func TestMethodPermsNameEveryPublicMethod(t *testing.T) {
	var methods []string
	protoregistry.GlobalFiles.RangeFilesByPackage("meta.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				methods = append(methods, "/"+string(sd.FullName())+"/"+string(sd.Methods().Get(j).Name()))
			}
		}
		return true
	})
	if len(methods) < 40 {
		t.Fatalf("found %d public methods, want the whole API (is rpc/metapb registered?)", len(methods))
	}
	for _, m := range methods {
		if _, ok := methodPerms[m]; !ok {
			t.Errorf("%s: no permission in methodPerms", m)
		}
	}
	for m := range methodPerms {
		if !slices.Contains(methods, m) {
			t.Errorf("methodPerms names %s, which no service has", m)
		}
	}
}

func TestAuthorize(t *testing.T) {
	admin, broker, reader, member := Principal{RoleAdmin, "a"}, Principal{RoleBroker, "b1"}, Principal{RoleReader, "r"}, Principal{RoleMember, "n1"}
	user := &metapb.CreateResourceRequest{Resource: &metapb.Resource{Kind: metapb.ResourceKind_RESOURCE_KIND_USER, Name: "u"}}
	topic := &metapb.CreateResourceRequest{Resource: &metapb.Resource{Kind: metapb.ResourceKind_RESOURCE_KIND_TOPIC, Name: "t"}}
	tests := []struct {
		p      Principal
		method string
		req    any
		ok     bool
	}{
		{reader, "/meta.v1.KV/Get", nil, true},
		{reader, "/meta.v1.Watch/Watch", nil, true},
		{reader, "/meta.v1.KV/Put", nil, false},
		{reader, "/meta.v1.Controller/Heartbeat", &metapb.HeartbeatRequest{BrokerId: "r"}, false},
		{broker, "/meta.v1.KV/Put", nil, true},
		{broker, "/meta.v1.Sessions/Put", nil, true},
		{broker, "/meta.v1.Controller/Heartbeat", &metapb.HeartbeatRequest{BrokerId: "b1"}, true},
		{broker, "/meta.v1.Controller/Heartbeat", &metapb.HeartbeatRequest{BrokerId: "b2"}, false},
		{broker, "/meta.v1.Controller/RegisterBroker", &metapb.RegisterBrokerRequest{BrokerId: "b2"}, false},
		{broker, "/meta.v1.Controller/ReportConnector", &metapb.ReportConnectorRequest{BrokerId: "b2"}, false},
		{broker, "/meta.v1.Metadata/Create", topic, true},
		{broker, "/meta.v1.Metadata/Create", user, false},
		{broker, "/meta.v1.Metadata/Delete", &metapb.DeleteResourceRequest{Kind: metapb.ResourceKind_RESOURCE_KIND_ACL}, false},
		{broker, "/meta.v1.Cluster/AddMember", nil, false},
		{broker, "/meta.v1.Cluster/TransferLeader", nil, false},
		{broker, "/meta.v1.Cluster/StateHash", nil, false},
		{admin, "/meta.v1.Cluster/AddMember", nil, true},
		{admin, "/meta.v1.Metadata/Create", user, true},
		{admin, "/meta.v1.Controller/Heartbeat", &metapb.HeartbeatRequest{BrokerId: "b2"}, true},
		{member, "/meta.v1.Cluster/RemoveMember", nil, true},
		{admin, "/meta.v1.KV/NoSuchMethod", nil, false},
	}
	for _, tt := range tests {
		err := authorize(tt.p, tt.method, tt.req)
		if tt.ok != (err == nil) {
			t.Errorf("%s %s %v: got %v, want allowed %t", tt.p, tt.method, tt.req, err, tt.ok)
		}
		if err != nil && status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s %s: got code %s, want PermissionDenied", tt.p, tt.method, status.Code(err))
		}
	}
}

func TestLoadTokens(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "tokens")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	h := HashToken("secret")
	got, err := LoadTokens(write("# comment\n\nbroker b1 " + h + "\n"))
	if err != nil || got[h] != (Principal{RoleBroker, "b1"}) || len(got) != 1 {
		t.Fatalf("got %v, %v; want broker b1 under the hash", got, err)
	}
	for in, want := range map[string]string{
		"broker b1\n":            "got 2 fields",
		"member n1 " + h + "\n":  "role",
		"root x " + h + "\n":     "role",
		"broker b1 secret\n":     "64 hex",
		"reader r " + h + " x\n": "fields",
	} {
		if _, err := LoadTokens(write(in)); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), ":1:") {
			t.Errorf("%q: got %v, want an error naming line 1 and %q", in, err, want)
		}
	}
}
