package arch

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// maxLines bounds a production file: past it a file has almost always
// taken on a second job, and reviewers stop reading it whole (issue 9).
const maxLines = 600

// production reports whether the module file at rel (slash-separated,
// relative to the module root) is production code: not a test, not in a
// package that only tests import (e2e and its rig, the *test fakes),
// not generated.
func production(t *testing.T, rel string, data []byte) bool {
	if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
		return false
	}
	dir := filepath.ToSlash(filepath.Dir(rel))
	if dir == "e2e" || strings.HasPrefix(dir, "e2e/") || strings.HasSuffix(dir, "test") {
		return false
	}
	f, err := parser.ParseFile(token.NewFileSet(), rel, data, parser.PackageClauseOnly|parser.ParseComments)
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return !ast.IsGenerated(f)
}

func TestFileSize(t *testing.T) {
	var seen, long []string
	for _, f := range sourceFiles(t) {
		data, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if !production(t, f.rel, data) {
			continue
		}
		seen = append(seen, f.rel)
		// As wc -l counts.
		if n := bytes.Count(data, []byte("\n")); n > maxLines {
			long = append(long, fmt.Sprintf("%s (%d lines)", f.rel, n))
		}
	}
	if !slices.Contains(seen, "hostagent/lxc/lxc.go") || !slices.Contains(seen, "cmd/upscale/main.go") {
		t.Fatalf("the walk found %d production files, without hostagent/lxc/lxc.go or cmd/upscale/main.go: it could not fail", len(seen))
	}
	if len(long) > 0 {
		t.Errorf("production files over %d lines (split them by job):\n\t%s", maxLines, strings.Join(long, "\n\t"))
	}
}
