package agentapi_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The server reaches agents only through this package: outside it no
// non-test file spells an agent's subject or uses Subject and the Method
// constants or bus.AgentSubject (except hostagent, which serves them, and
// bus, which owns the subject space for its permissions), and only the agent's own binary and
// the server's (for describing its own box, hostagent.Local) import
// hostagent.
func TestAgentsAreCalledOnlyThroughAgentAPI(t *testing.T) {
	const module = "github.com/upscalehq/upscale/"
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	mayImportHostagent := map[string]bool{"cmd/upscale-agent": true, "cmd/upscale": true}
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		dir := filepath.ToSlash(filepath.Dir(rel))
		within := func(pkg string) bool { return dir == pkg || strings.HasPrefix(dir, pkg+"/") }
		if within("agentapi") {
			return nil
		}
		files++
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		agentapiName := ""
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			switch p {
			case module + "hostagent":
				if !within("hostagent") && !mayImportHostagent[dir] {
					t.Errorf("%s imports hostagent: the server calls agents through agentapi", rel)
				}
			case module + "agentapi":
				agentapiName = "agentapi"
				if im.Name != nil {
					agentapiName = im.Name.Name
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if n.Kind == token.STRING && strings.Contains(n.Value, "upscale.agent.") && !within("bus") {
					t.Errorf("%s spells an agent subject (%s): call agents through agentapi.Client", rel, n.Value)
				}
			case *ast.SelectorExpr:
				x, ok := n.X.(*ast.Ident)
				if ok && agentapiName != "" && x.Name == agentapiName && !within("hostagent") &&
					(n.Sel.Name == "Subject" || strings.HasPrefix(n.Sel.Name, "Method")) {
					t.Errorf("%s uses agentapi.%s: call agents through agentapi.Client", rel, n.Sel.Name)
				}
				if ok && n.Sel.Name == "AgentSubject" && !within("bus") {
					t.Errorf("%s uses %s.AgentSubject: call agents through agentapi.Client", rel, x.Name)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("looked at %d files under %s, want the whole module", files, root)
	}
}
