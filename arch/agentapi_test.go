package arch

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"
)

// The server reaches agents only through this package: outside agentapi no
// non-test file spells an agent's subject or uses Subject and the Method
// constants or bus.AgentSubject (except hostagent, which serves them, and
// bus, which owns the subject space for its permissions), and only the agent's own binary and
// the server's (for describing its own box, hostagent.Local) import
// hostagent.
func TestAgentsAreCalledOnlyThroughAgentAPI(t *testing.T) {
	mayImportHostagent := map[string]bool{"cmd/upscale-agent": true, "cmd/upscale": true}
	for _, sf := range sourceFiles(t) {
		dir := sf.dir()
		within := func(pkg string) bool { return under(dir, pkg) }
		if within("agentapi") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), sf.path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		rel := sf.rel
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
	}
}
