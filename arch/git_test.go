package arch

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// mayRunGit are the non-test files that may run the git binary: repos, the
// one reader of repositories (and their creator), and gitd's transport,
// which execs receive-pack and upload-pack. e2e and bench play the user's
// side (git push, clone) against a server, so they are not the server
// reading a repository.
func mayRunGit(rel string) bool {
	return under(filepath.ToSlash(filepath.Dir(rel)), "repos", "e2e", "bench") || rel == "gitd/git.go"
}

// gitUses finds where a file runs the git binary through os/exec or
// syscall.Exec with a program named by a constant ("git", or a path ending
// in /git), and whether it imports go-git.
func gitUses(fset *token.FileSet, f *ast.File) (execs []token.Position, gogit bool) {
	pkgNames := map[string][]string{} // import path -> its names in this file
	for _, im := range f.Imports {
		p, _ := strconv.Unquote(im.Path.Value)
		if strings.HasPrefix(p, "github.com/go-git/") {
			gogit = true
		}
		name := p[strings.LastIndex(p, "/")+1:]
		if im.Name != nil {
			name = im.Name.Name
		}
		pkgNames[p] = append(pkgNames[p], name)
	}
	// argument index of the program, per function
	prog := map[[2]string]int{
		{"os/exec", "Command"}: 0, {"os/exec", "CommandContext"}: 1, {"os/exec", "LookPath"}: 0,
		{"syscall", "Exec"}: 0, {"os", "StartProcess"}: 0,
	}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		x, ok := sel.X.(*ast.Ident)
		if !ok {
			return true
		}
		for fn, i := range prog {
			if !slices.Contains(pkgNames[fn[0]], x.Name) || sel.Sel.Name != fn[1] || len(call.Args) <= i {
				continue
			}
			if v, ok := constString(call.Args[i]); ok && (v == "git" || strings.HasSuffix(v, "/git")) {
				execs = append(execs, fset.Position(call.Pos()))
			}
		}
		return true
	})
	return execs, gogit
}

// constString is the value of a string literal, or of a constant or
// variable declared with one (in the same file).
func constString(e ast.Expr) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind == token.STRING {
			v, err := strconv.Unquote(e.Value)
			return v, err == nil
		}
	case *ast.ParenExpr:
		return constString(e.X)
	case *ast.Ident:
		if e.Obj == nil {
			return "", false
		}
		switch d := e.Obj.Decl.(type) {
		case *ast.ValueSpec:
			for i, n := range d.Names {
				if n.Name == e.Name && i < len(d.Values) {
					return constString(d.Values[i])
				}
			}
		case *ast.AssignStmt:
			for i, l := range d.Lhs {
				if id, ok := l.(*ast.Ident); ok && id.Name == e.Name && i < len(d.Rhs) {
					return constString(d.Rhs[i])
				}
			}
		}
	}
	return "", false
}

// TestOnlyReposReadsRepositories: outside repos and gitd's transport no
// non-test file runs git, and outside repos none imports go-git.
func TestOnlyReposReadsRepositories(t *testing.T) {
	allowed := 0
	for _, sf := range sourceFiles(t) {
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, sf.path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		execs, gogit := gitUses(fset, f)
		if gogit && !under(sf.dir(), "repos") {
			t.Errorf("%s imports go-git: repositories are read through repos (docs/architecture.md)", sf.rel)
		}
		if mayRunGit(sf.rel) {
			allowed += len(execs)
			continue
		}
		for _, p := range execs {
			t.Errorf("%s:%d runs git: repositories are read through repos, git is served by gitd/git.go (docs/architecture.md)", sf.rel, p.Line)
		}
	}
	// repos and gitd/git.go run git: a walk that saw none of them could not
	// have seen anyone else's either.
	if allowed < 3 {
		t.Fatalf("found %d runs of git in repos, gitd/git.go, e2e and bench; the check is blind", allowed)
	}
}

// The check itself finds each way of spelling a run of git.
func TestGitUsesFindsRunsOfGit(t *testing.T) {
	src := `package x

import (
	"context"
	"os/exec"
	x "os/exec"
	"syscall"

	gogit "github.com/go-git/go-git/v5"
)

const gitBin = "/usr/bin/git"

func f(ctx context.Context) {
	exec.Command("git", "rev-parse", "HEAD")
	x.CommandContext(ctx, "git", "log")
	exec.Command(gitBin)
	bin := "git"
	exec.CommandContext(ctx, bin)
	exec.LookPath("git")
	syscall.Exec("/usr/bin/git", nil, nil)
	exec.Command("ssh", "git")
	exec.Command("tar")
	_ = gogit.PlainOpen
}
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	execs, gogit := gitUses(fset, f)
	var lines []int
	for _, p := range execs {
		lines = append(lines, p.Line)
	}
	if !gogit {
		t.Error("the go-git import went unseen")
	}
	slices.Sort(lines)
	if want := []int{15, 16, 17, 19, 20, 21}; !slices.Equal(lines, want) {
		t.Errorf("runs of git found on lines %v, want %v", lines, want)
	}
}
