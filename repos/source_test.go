package repos

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upscalehq/upscale/detect"
	"github.com/upscalehq/upscale/names"
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

// A pushed commit's objects sit in the push's quarantine directory until
// the push is accepted: Source reads them only with the quarantine
// variables it is given.
func TestSourceReadsQuarantineOnlyWithItsEnv(t *testing.T) {
	ctx := context.Background()
	pushed, commit := commitTree(t, map[string]string{"app.yaml": "runtime: python\n"})
	r := &Repos{Root: t.TempDir(), Binary: "/usr/local/bin/upscale"}
	app := names.App{Namespace: "acme", Name: "web"}
	if err := r.Create(ctx, app); err != nil {
		t.Fatal(err)
	}
	repo, _ := r.Path(app)
	quarantine := filepath.Join(repo, "objects", "tmp_objdir-incoming-x")
	if out, err := exec.Command("cp", "-a", filepath.Join(pushed, "objects"), quarantine).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	src := Source{Repo: repo, Commit: commit}
	if _, err := src.Info(ctx); err == nil {
		t.Fatal("Info read a quarantined commit without the quarantine variables")
	}
	src.Env = []string{"GIT_OBJECT_DIRECTORY=" + quarantine, "GIT_ALTERNATE_OBJECT_DIRECTORIES=" + filepath.Join(repo, "objects"), "GIT_QUARANTINE_PATH=" + quarantine}
	if info, err := src.Info(ctx); err != nil || info.Subject != "c" {
		t.Fatalf("Info under quarantine = %+v, %v", info, err)
	}
	if data, problem, err := src.AppYAML(ctx); err != nil || problem != "" || string(data) != "runtime: python\n" {
		t.Fatalf("AppYAML under quarantine = %q, %q, %v", data, problem, err)
	}
}

func TestHead(t *testing.T) {
	ctx := context.Background()
	r := &Repos{Root: t.TempDir(), Binary: "/usr/local/bin/upscale"}
	app := names.App{Namespace: "acme", Name: "web"}
	if err := r.Create(ctx, app); err != nil {
		t.Fatal(err)
	}
	if head, err := r.Head(ctx, app, "master"); err != nil || head != "" {
		t.Fatalf("Head of an empty repository = %q, %v", head, err)
	}
	src, commit := commitTree(t, map[string]string{"app.py": "x"})
	repo, _ := r.Path(app)
	if out, err := exec.Command("git", "--git-dir", repo, "fetch", "-q", src, "HEAD:refs/heads/master").CombinedOutput(); err != nil {
		t.Fatalf("git fetch: %v %s", err, out)
	}
	if head, err := r.Head(ctx, app, "master"); err != nil || head != commit {
		t.Fatalf("Head = %q, %v; want %s", head, err, commit)
	}
	if head, err := r.Head(ctx, app, "main"); err != nil || head != "" {
		t.Fatalf("Head of a missing branch = %q, %v", head, err)
	}
	if _, err := r.Head(ctx, names.App{Namespace: "..", Name: "web"}, "master"); err == nil {
		t.Fatal("Head took a bad namespace")
	}
}

// The push path hands a Source to runtime detection.
var _ detect.Files = Source{}

// Detection reads the files at the root of a pushed commit: their names
// (not directories), and each file as AppYAML reads app.yaml.
func TestSourceFilesAndReadFile(t *testing.T) {
	ctx := context.Background()
	repo, commit := commitTree(t, map[string]string{
		"package.json": `{"name": "x"}`, "Procfile": "web: node server.js\n", ".static": "",
		"with space.txt": "x", "lib/index.js": "x", "big": strings.Repeat("x", 2000),
	})
	src := Source{Repo: repo, Commit: commit}
	files, err := src.Files(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(files, ","), ".static,Procfile,big,package.json,with space.txt"; got != want {
		t.Errorf("Files = %s, want %s", got, want)
	}
	for _, tc := range []struct{ name, data, problem string }{
		{"Procfile", "web: node server.js\n", ""},
		{"lib", "", "lib: at the root of " + commit[:7] + " is a directory, not a file"},
		{"go.mod", "", "go.mod: missing at the root of " + commit[:7]},
		{"big", "", "big: 2000 bytes is over the 1 KiB limit"},
	} {
		data, problem, err := src.ReadFile(ctx, tc.name, 1<<10)
		if err != nil || string(data) != tc.data || problem != tc.problem {
			t.Errorf("ReadFile(%s) = %q, %q, %v; want %q, %q", tc.name, data, problem, err, tc.data, tc.problem)
		}
	}
	if _, _, err := src.ReadFile(ctx, "lib/index.js", 1<<10); err == nil {
		t.Error("ReadFile of a path below the root: no error")
	}
}
