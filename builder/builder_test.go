package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// commitTree makes a bare repo with one commit holding files, and returns
// the repo path and commit id.
func commitTree(t *testing.T, files map[string]string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	work, bare := filepath.Join(dir, "work"), filepath.Join(dir, "bare.git")
	gitRun := func(d string, args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = d
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	os.MkdirAll(work, 0o755)
	gitRun(work, "init", "-q")
	for name, body := range files {
		p := filepath.Join(work, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(body), 0o644)
	}
	gitRun(work, "add", "-A")
	gitRun(work, "commit", "-q", "--allow-empty", "-m", "c")
	gitRun(dir, "clone", "-q", "--bare", work, bare)
	return bare, gitRun(work, "rev-parse", "HEAD")
}

func TestReadAppYAML(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		files   map[string]string
		data    string
		problem string
	}{
		{"present", map[string]string{"app.yaml": "runtime: python\n"}, "runtime: python\n", ""},
		{"missing", map[string]string{"app.py": "x"}, "", "app.yaml: missing at the root of"},
		{"directory", map[string]string{"app.yaml/x": "x"}, "", "is a directory, not a file"},
		{"only in a subdir", map[string]string{"sub/app.yaml": "runtime: python\n"}, "", "app.yaml: missing"},
		{"too big", map[string]string{"app.yaml": strings.Repeat("#", 10<<20)}, "", "app.yaml: 10485760 bytes is over the 64 KiB limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo, commit := commitTree(t, tc.files)
			data, problem, err := Source{Repo: repo, Commit: commit}.AppYAML(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != tc.data || !strings.Contains(problem, tc.problem) || (tc.problem == "" && problem != "") {
				t.Fatalf("data %q problem %q", data, problem)
			}
		})
	}
}

func TestSourceInfoAndArchive(t *testing.T) {
	repo, commit := commitTree(t, map[string]string{"app.py": "print(1)\n", "lib/x.txt": "x"})
	src := Source{Repo: repo, Commit: commit}
	info, err := src.Info(context.Background())
	if err != nil || info.Subject != "c" || info.Author != "t" {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	var buf bytes.Buffer
	if err := src.Archive(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	var files []string
	tr := tar.NewReader(&buf)
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		if hdr.Typeflag == tar.TypeReg {
			files = append(files, hdr.Name)
		}
	}
	if strings.Join(files, " ") != "app.py lib/x.txt" {
		t.Fatalf("archive holds %v", files)
	}
	if _, err := (Source{Repo: repo, Commit: strings.Repeat("0", 40)}).Info(context.Background()); err == nil {
		t.Fatal("Info of a missing commit succeeded")
	}
}
