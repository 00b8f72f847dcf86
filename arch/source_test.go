package arch

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sourceFile is one non-test .go file of the module.
type sourceFile struct {
	rel  string // slash-separated, from the module root
	path string // to open
}

// dir is the file's package directory, slash-separated.
func (f sourceFile) dir() string { return filepath.ToSlash(filepath.Dir(f.rel)) }

// sourceFiles lists the module's non-test .go files, skipping the
// directories the go tool skips.
func sourceFiles(t *testing.T) []sourceFile {
	t.Helper()
	root := ".."
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	var out []sourceFile
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		out = append(out, sourceFile{rel: filepath.ToSlash(rel), path: path})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A walk that went wrong would find nothing to complain about.
	if len(out) < 100 {
		t.Fatalf("the walk found %d source files: it could not fail", len(out))
	}
	return out
}
