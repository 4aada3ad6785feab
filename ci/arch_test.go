package ci

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/metamq/meta"

// rules says which meta packages each package may import (by directory,
// relative to the module root; a rule for "x" also covers "x/..." unless a
// more specific rule exists). It is ../shared/ARCHITECTURE.md's table, made
// executable. External modules are free except grocksdb (and cgo), which
// only rocks may use.
var rules = map[string][]string{
	"rocks":                 {},
	"sm":                    {"rocks", "sm/logpb", "sm/state"},
	"sm/state":              {"sm/logpb"},
	"sm/logpb":              {},
	"rpc/metapb":            {},
	"rpc/transport":         {"rpc/transport/raftpb", "rpc/metapb"},
	"rpc/transport/raftpb":  {},
	"rpc/client":            {"rpc/metapb"},
	"rpc/server":            {"rpc/metapb", "sm/logpb", "sm/state"},
	"metanode":              {"sm", "sm/logpb", "sm/state", "rocks", "rpc/transport", "rpc/transport/raftpb", "rpc/metapb"},
	"metanode/metanodetest": {"metanode", "rpc/server", "rpc/client", "rpc/metapb", "verify", "sm", "sm/logpb", "controller"},
	"controller":            {"sm", "sm/logpb", "rpc/metapb"},
	"verify":                {"rpc/client", "rpc/metapb", "verify"},
	"verify/poll":           {},
	"verify/smallfs":        {},
	"verify/testkit":        {},
	"chaos":                 {"verify", "rpc/client", "rpc/metapb", "chaos"},
	"contrib":               {"rpc/client", "rpc/metapb"},
	"cmd":                   {"*"},
	"ci":                    {},
}

// external says which modules outside meta and the standard library the
// packages that stand lowest may import (by directory, covering its
// subdirectories like rules). rocks wraps RocksDB for raft; rpc/transport
// is raft's transport over gRPC, imported by metanode and never the
// reverse. Every other package may use any module in go.mod.
var external = map[string][]string{
	"rocks":         {"C", "github.com/linxGnu/grocksdb", "github.com/hashicorp/raft"},
	"rpc/transport": {"github.com/hashicorp/raft", "google.golang.org/grpc", "google.golang.org/protobuf", "google.golang.org/genproto/googleapis/rpc"},
}

// ruleFor returns the rule of the most specific directory prefix.
func ruleFor(dir string) (string, []string, bool) {
	return mostSpecific(rules, dir)
}

// mostSpecific returns the entry of table whose directory is the longest
// prefix of dir (dir itself or a parent).
func mostSpecific(table map[string][]string, dir string) (string, []string, bool) {
	best := ""
	for k := range table {
		if (dir == k || strings.HasPrefix(dir, k+"/")) && len(k) > len(best) {
			best = k
		}
	}
	if best == "" {
		return "", nil, false
	}
	return best, table[best], true
}

// externalAllowed reports whether package dir may import imp, a path
// outside meta: the standard library always, other modules only as
// external says.
func externalAllowed(dir, imp string) bool {
	_, allow, limited := mostSpecific(external, dir)
	if !limited || (imp != "C" && !strings.Contains(strings.Split(imp, "/")[0], ".")) {
		return true
	}
	return slices.ContainsFunc(allow, func(a string) bool { return imp == a || strings.HasPrefix(imp, a+"/") })
}

// allowed reports whether package dir may import the meta package imp:
// a package may import within its own rule's subtree and anything its
// rule lists (with that entry's subpackages).
func allowed(dir, imp string) bool {
	root, allow, ok := ruleFor(dir)
	if !ok {
		return false
	}
	if r, _, _ := ruleFor(imp); r == root {
		return true
	}
	for _, a := range allow {
		if a == "*" || imp == a || strings.HasPrefix(imp, a+"/") {
			return true
		}
	}
	return false
}

type pkgInfo struct {
	imports map[string][]string // import path -> files
	hasDoc  bool
	cgo     []string
}

// scan reads the imports of every non-test Go file under root.
func scan(t *testing.T, root string) map[string]*pkgInfo {
	t.Helper()
	pkgs := map[string]*pkgInfo{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "data" || name == "bin" || name == "chaos-runs") {
				return filepath.SkipDir
			}
			return nil
		}
		// tools.go pins modules under a build tag and is never compiled.
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") || name == "tools.go" {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		p := pkgs[rel]
		if p == nil {
			p = &pkgInfo{imports: map[string][]string{}}
			pkgs[rel] = p
		}
		if name == "doc.go" {
			p.hasDoc = true
		}
		for _, is := range f.Imports {
			ip, _ := strconv.Unquote(is.Path.Value)
			p.imports[ip] = append(p.imports[ip], name)
			if ip == "C" || strings.HasPrefix(ip, "github.com/linxGnu/grocksdb") {
				p.cgo = append(p.cgo, name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func violations(pkgs map[string]*pkgInfo) []string {
	var out []string
	for dir, p := range pkgs {
		if _, _, ok := ruleFor(dir); !ok && dir != "." {
			out = append(out, dir+": package outside the architecture's directories")
			continue
		}
		for imp, files := range p.imports {
			rest, ok := strings.CutPrefix(imp, module+"/")
			if !ok {
				if !externalAllowed(dir, imp) {
					out = append(out, dir+" imports "+imp+" ("+strings.Join(files, ", ")+"), a module its doc.go does not allow")
				}
				continue
			}
			if !allowed(dir, rest) {
				out = append(out, dir+" imports "+rest+" ("+strings.Join(files, ", ")+"), against ../shared/ARCHITECTURE.md")
			}
		}
		if len(p.cgo) > 0 && dir != "rocks" {
			out = append(out, dir+" uses cgo/grocksdb ("+strings.Join(p.cgo, ", ")+"); only rocks may")
		}
	}
	sort.Strings(out)
	return out
}

func TestImportsFollowArchitecture(t *testing.T) {
	for _, v := range violations(scan(t, "..")) {
		t.Error(v)
	}
}

func TestEveryPackageHasDoc(t *testing.T) {
	for dir, p := range scan(t, "..") {
		if dir == "." {
			continue
		}
		if !p.hasDoc {
			t.Errorf("%s: no doc.go (say what the package owns and must not import)", dir)
		}
	}
}

// The rules must catch a violation: a synthetic tree where verify imports
// metanode, sm uses grocksdb and rpc/transport/raftpb a module outside its
// list.
func TestArchitectureTestCatchesViolations(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, src string) {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("verify/doc.go", "package verify\nimport _ \""+module+"/metanode\"\n")
	write("sm/doc.go", "package sm\nimport _ \"github.com/linxGnu/grocksdb\"\n")
	write("rpc/client/doc.go", "package client\nimport _ \""+module+"/rpc/metapb\"\n")
	write("rpc/transport/raftpb/doc.go", "package raftpb\nimport (\n_ \"google.golang.org/protobuf/proto\"\n_ \"github.com/spf13/cobra\"\n_ \"os\"\n)\n")
	got := violations(scan(t, dir))
	want := []string{"rpc/transport/raftpb imports github.com/spf13/cobra", "sm uses cgo/grocksdb", "verify imports metanode"}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(v string) bool { return strings.HasPrefix(v, w) }) {
			t.Errorf("violation %q not reported; got %v", w, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d violations %v, want %d", len(got), got, len(want))
	}
}
