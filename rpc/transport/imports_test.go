package transport

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports enforces the package's dependency rule (doc.go): the
// standard library, hashicorp/raft, grpc, protobuf and raftpb only, so
// that metanode can import this package and never the reverse.
func TestImports(t *testing.T) {
	allowed := []string{
		"github.com/hashicorp/raft",
		"google.golang.org/grpc",
		"google.golang.org/protobuf",
		"google.golang.org/genproto/googleapis/rpc", // google.rpc.Status, the standard gRPC status proto
		"github.com/metamq/meta/rpc/transport/raftpb",
		"github.com/metamq/meta/rpc/metapb", // the error vocabulary (a leaf: it imports no meta package)
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	raftpbFiles, err := filepath.Glob("raftpb/*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, f := range append(files, raftpbFiles...) {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range af.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if !strings.Contains(strings.Split(path, "/")[0], ".") {
				continue // standard library
			}
			ok := false
			for _, a := range allowed {
				ok = ok || path == a || strings.HasPrefix(path, a+"/")
			}
			if !ok {
				t.Errorf("%s imports %s: not allowed", f, path)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no source files checked")
	}
}
