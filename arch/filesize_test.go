package arch

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
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
	root := ".."
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	var seen, long []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			// The go tool ignores these too.
			if path != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if !strings.HasSuffix(rel, ".go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !production(t, rel, data) {
			return nil
		}
		seen = append(seen, rel)
		// As wc -l counts.
		if n := bytes.Count(data, []byte("\n")); n > maxLines {
			long = append(long, fmt.Sprintf("%s (%d lines)", rel, n))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A walk that went wrong would find nothing long.
	if len(seen) < 100 || !slices.Contains(seen, "hostagent/lxc/lxc.go") || !slices.Contains(seen, "cmd/upscale/main.go") {
		t.Fatalf("the walk found %d production files, without hostagent/lxc/lxc.go or cmd/upscale/main.go: it could not fail", len(seen))
	}
	if len(long) > 0 {
		t.Errorf("production files over %d lines (split them by job):\n\t%s", maxLines, strings.Join(long, "\n\t"))
	}
}
