package rocks

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports enforces the package boundary written in doc.go: production
// files import only the standard library, grocksdb, raft and cgo.
func TestImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{
		"C":                           true,
		"github.com/linxGnu/grocksdb": true,
		"github.com/hashicorp/raft":   true,
	}
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			std := !strings.Contains(strings.Split(path, "/")[0], ".")
			if !allowed[path] && !(std && path != "C") {
				t.Errorf("%s imports %s; rocks may import only the standard library, grocksdb and raft", name, path)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no production files found")
	}
}
