// Package repostest makes repositories for unit tests.
package repostest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upscalehq/upscale/repos"
)

// Commit is a repository under dir with one commit ("first version" by
// Ann, with app.py), as a push would have it.
func Commit(t *testing.T, dir string) repos.Source {
	t.Helper()
	work := filepath.Join(dir, "work")
	os.MkdirAll(work, 0o755)
	os.WriteFile(filepath.Join(work, "app.py"), []byte("print(1)\n"), 0o644)
	for _, args := range [][]string{{"init", "-q"}, {"add", "."}, {"-c", "user.name=Ann", "-c", "user.email=a@b", "commit", "-qm", "first version"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = work
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %s", args, out)
		}
	}
	head, err := exec.Command("git", "-C", work, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse: %v", err)
	}
	return repos.Source{Repo: filepath.Join(work, ".git"), Commit: strings.TrimSpace(string(head))}
}
