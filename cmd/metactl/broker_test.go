package main

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyTestMain(m) }

// metactl runs one command line in process, as the binary would.
func metactl(t *testing.T, endpoints string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	a := &app{out: &out, errOut: io.Discard}
	root := a.root()
	root.SetArgs(append([]string{"--endpoints", endpoints, "--timeout", "20s"}, args...))
	root.SetErr(&bytes.Buffer{})
	err := a.execute(root)
	return out.String(), err
}

// The broker API's commands against a real in-process cluster.
func TestBrokerCommands(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{Patient: true})
	eps := strings.Join(c.Endpoints(), ",")
	ok := func(args ...string) string {
		t.Helper()
		out, err := metactl(t, eps, args...)
		if err != nil {
			t.Fatalf("metactl %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	fails := func(want string, args ...string) {
		t.Helper()
		_, err := metactl(t, eps, args...)
		if err == nil || !strings.Contains(oneLine(err), want) {
			t.Fatalf("metactl %s: got error %v, want one saying %q", strings.Join(args, " "), err, want)
		}
	}
	t.Run("topic", func(t *testing.T) {
		ok("topic", "create", "orders", "--partitions", "3", "--config", "retention.ms=1000")
		var got metapb.GetResourceResponse
		if err := protojson.Unmarshal([]byte(ok("topic", "get", "orders", "-o", "json")), &got); err != nil {
			t.Fatal(err)
		}
		sp := got.Resource.GetTopic()
		if sp.GetPartitions() != 3 || sp.GetConfig()["retention.ms"] != "1000" {
			t.Fatalf("topic get: got %v, want 3 partitions and retention.ms=1000", got.Resource)
		}
		ok("topic", "update", "orders", "--partitions", "4", "--revision", fmt.Sprint(got.Resource.ModRevision))
		fails("revision conflict", "topic", "update", "orders", "--partitions", "5", "--revision", fmt.Sprint(got.Resource.ModRevision))
		if out := ok("topic", "list"); !strings.Contains(out, `"partitions":4`) || !strings.Contains(out, `"retention.ms":"1000"`) {
			t.Fatalf("topic list: got %q, want orders with 4 partitions and its config kept", out)
		}
		ok("topic", "delete", "orders")
		fails("not found", "topic", "get", "orders")
		ok("acl", "create", "a1", "--principal", "User:x", "--operation", "READ")
		if out := ok("acl", "get", "a1"); !strings.Contains(out, "User:x") {
			t.Fatalf("acl get: got %q", out)
		}
	})
	t.Run("session", func(t *testing.T) {
		if out := ok("session", "put", "c1", "c2", "--broker", "b1", "--disconnected", "--expiry", "60"); !strings.Contains(out, "put 2 sessions") {
			t.Fatalf("session put: got %q", out)
		}
		var got metapb.GetSessionResponse
		if err := protojson.Unmarshal([]byte(ok("session", "get", "c1", "-o", "json")), &got); err != nil {
			t.Fatal(err)
		}
		if s := got.Session; s.GetBrokerId() != "b1" || s.Connected || s.ExpiresAtUnixNano == 0 {
			t.Fatalf("session get: got %v", s)
		}
		if out := ok("session", "list"); !strings.Contains(out, "c1") || !strings.Contains(out, "c2") {
			t.Fatalf("session list: got %q", out)
		}
		if out := ok("session", "del", "c1", "c3"); !strings.Contains(out, "c1: deleted") || !strings.Contains(out, "c3: no session") {
			t.Fatalf("session del: got %q", out)
		}
		fails("not found", "session", "get", "c1")
	})
	// --all follows pages to the end; without it one page is printed.
	t.Run("paging", func(t *testing.T) {
		for _, k := range []string{"p1", "p2", "p3"} {
			ok("put", "page/"+k, "v"+k)
			ok("session", "put", "page-"+k, "--broker", "b1")
			ok("retained", "set", "page/"+k, "m"+k)
			ok("user", "create", "page-"+k)
		}
		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{"list", "page/"}, "page/p1\tvp1\npage/p2\tvp2\npage/p3\tvp3\n"},
			{[]string{"retained", "list", "page/#"}, "page/p1\tmp1\npage/p2\tmp2\npage/p3\tmp3\n"},
		} {
			if out := ok(append(tt.args, "--limit", "1", "--all")...); out != tt.want {
				t.Errorf("%s --limit 1 --all: got %q, want %q", strings.Join(tt.args, " "), out, tt.want)
			}
			if out := ok(append(tt.args, "--limit", "1")...); !strings.HasPrefix(tt.want, out) || strings.Count(out, "\n") != 1 {
				t.Errorf("%s --limit 1: got %q, want the first line of %q", strings.Join(tt.args, " "), out, tt.want)
			}
		}
		for _, args := range [][]string{{"session", "list"}, {"user", "list"}} {
			out := ok(append(args, "--limit", "1", "--all")...)
			for _, k := range []string{"page-p1", "page-p2", "page-p3"} {
				if !strings.Contains(out, k) {
					t.Errorf("%s --limit 1 --all: got %q, want %s in it", strings.Join(args, " "), out, k)
				}
			}
			if one := ok(append(args, "--limit", "1")...); strings.Count(one, "page-") > 1 {
				t.Errorf("%s --limit 1: got %q, want one page of one", strings.Join(args, " "), one)
			}
		}
	})
	t.Run("retained", func(t *testing.T) {
		ok("retained", "set", "a/b", "hello", "--qos", "1")
		if out := ok("retained", "get", "a/b"); out != "hello\n" {
			t.Fatalf("retained get: got %q", out)
		}
		if out := ok("retained", "list", "a/#"); out != "a/b\thello\n" {
			t.Fatalf("retained list: got %q", out)
		}
		ok("retained", "set", "a/b", "")
		fails("not found", "retained", "get", "a/b")
	})
	t.Run("will", func(t *testing.T) {
		if out := ok("will", "put", "c9", "--topic", "lwt", "--payload", "bye"); !strings.Contains(out, "PENDING") {
			t.Fatalf("will put: got %q", out)
		}
		fails("not claimed", "will", "claim", "c9", "--broker", "b1")
		ok("will", "due")
		fails("not completed", "will", "complete", "c9", "--broker", "b1")
		ok("will", "del", "c9")
		fails("not found", "will", "get", "c9")
	})
	t.Run("lease", func(t *testing.T) {
		id := strings.TrimSpace(ok("lease", "grant", "60"))
		ok("put", "leased", "v", "--lease", id)
		if out := ok("lease", "ttl", id, "--keys"); !strings.Contains(out, "leased") || !strings.Contains(out, "of 60s") {
			t.Fatalf("lease ttl: got %q", out)
		}
		ok("lease", "keepalive", id)
		if out := ok("lease", "revoke", id); !strings.Contains(out, "1 keys deleted") {
			t.Fatalf("lease revoke: got %q", out)
		}
		fails("not found", "get", "leased")
		fails("not found", "put", "x", "v", "--lease", id)
	})
	t.Run("watch", func(t *testing.T) {
		ok("put", "w/1", "a")
		ok("put", "w/2", "b")
		out := ok("watch", "w/", "--rev", "1", "--limit", "2")
		if !strings.Contains(out, "PUT data-0@") || !strings.Contains(out, "w/1 a") || !strings.Contains(out, "w/2 b") {
			t.Fatalf("watch: got %q", out)
		}
		out = ok("watch", "--resources", "topic", "--rev", "1", "--limit", "3", "-o", "json")
		if n := strings.Count(out, `"name":"orders"`); n != 3 || !strings.Contains(out, `"type":"DELETE"`) {
			t.Fatalf("watch resources: got %q, want the topic's create, update and delete", out)
		}
	})
}

// Commands of the same name (the controller's "broker list") are merged,
// not replaced.
func TestAddMerged(t *testing.T) {
	root := &cobra.Command{Use: "metactl"}
	theirs := &cobra.Command{Use: "broker"}
	theirs.AddCommand(&cobra.Command{Use: "list", Run: func(*cobra.Command, []string) {}})
	root.AddCommand(theirs)
	a := &app{}
	addMerged(root, a.resourceCommands()...)
	var names []string
	for _, c := range root.Commands() {
		if c.Name() == "broker" {
			for _, s := range c.Commands() {
				names = append(names, s.Name())
			}
		}
	}
	slices.Sort(names)
	want := []string{"create", "delete", "get", "list", "list-resources", "update"}
	if !slices.Equal(names, want) {
		t.Fatalf("broker subcommands: got %v, want %v", names, want)
	}
}
