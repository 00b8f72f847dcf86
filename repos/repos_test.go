package repos

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upscalehq/upscale/hooks"
	"github.com/upscalehq/upscale/names"
)

func TestCreateDeleteAndHooks(t *testing.T) {
	root := t.TempDir()
	r := &Repos{Root: root, Binary: "/usr/local/bin/upscale"}
	app := names.App{Namespace: "acme", Name: "web"}
	ctx := context.Background()
	if err := r.Create(ctx, app); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, "acme", "web.git")
	out, err := exec.Command("git", "--git-dir", p, "rev-parse", "--is-bare-repository").Output()
	if err != nil || strings.TrimSpace(string(out)) != "true" {
		t.Fatalf("not a bare repo: %q %v", out, err)
	}
	out, _ = exec.Command("git", "--git-dir", p, "symbolic-ref", "HEAD").Output()
	if strings.TrimSpace(string(out)) != "refs/heads/master" {
		t.Fatalf("HEAD = %q", out)
	}
	for _, kv := range Config {
		out, _ = exec.Command("git", "--git-dir", p, "config", kv[0]).Output()
		if strings.TrimSpace(string(out)) != kv[1] {
			t.Fatalf("%s = %q, want %s", kv[0], out, kv[1])
		}
	}
	entries, _ := os.ReadDir(filepath.Join(p, "hooks"))
	if len(entries) != 2 {
		t.Fatalf("hooks dir holds %d files, want only the 2 shims", len(entries))
	}
	shim, _ := os.ReadFile(filepath.Join(p, "hooks", "pre-receive"))
	if string(shim) != hooks.Shim(r.Binary, hooks.PreReceive) {
		t.Fatalf("pre-receive shim = %q", shim)
	}
	if err := r.Create(ctx, app); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second Create: %v", err)
	}

	if changed, err := r.EnsureHooks(app); err != nil || changed {
		t.Fatalf("EnsureHooks with same binary: changed=%v err=%v", changed, err)
	}
	r.Binary = "/opt/upscale/bin/upscale"
	if changed, err := r.EnsureHooks(app); err != nil || !changed {
		t.Fatalf("EnsureHooks after move: changed=%v err=%v", changed, err)
	}
	shim, _ = os.ReadFile(filepath.Join(p, "hooks", "post-receive"))
	if !strings.Contains(string(shim), "'/opt/upscale/bin/upscale' hook post-receive") {
		t.Fatalf("post-receive shim not rewritten: %q", shim)
	}

	if err := r.Delete(app); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("repo still there: %v", err)
	}
	left, _ := os.ReadDir(filepath.Join(root, "acme"))
	if len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
	if err := r.Delete(app); err != nil {
		t.Fatalf("deleting a missing repo: %v", err)
	}
}

func TestPathRefusesBadNames(t *testing.T) {
	r := &Repos{Root: "/data/repos"}
	for _, app := range []names.App{{Namespace: "..", Name: "x"}, {Namespace: "a", Name: "../b"}, {Namespace: "a/b", Name: "c"}, {Namespace: "", Name: "c"}, {Namespace: "A", Name: "c"}} {
		if p, err := r.Path(app); err == nil {
			t.Errorf("Path(%v) = %s, want error", app, p)
		}
	}
	if p, err := r.Path(names.App{Namespace: "a", Name: "b"}); err != nil || p != "/data/repos/a/b.git" {
		t.Fatalf("Path = %q, %v", p, err)
	}
}

func TestConfine(t *testing.T) {
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"/r/a/objects", true},
		{"/r", false},
		{"/r/../etc", false},
		{"/rx/a", false},
		{"/etc/passwd", false},
	} {
		if err := Confine("/r", filepath.Clean(tc.path)); (err == nil) != tc.ok {
			t.Errorf("Confine(/r, %s) = %v", tc.path, err)
		}
	}
}
