// Package repos keeps the apps' bare git repositories on disk:
// ROOT/NAMESPACE/APP.git, each with Upscale's hook shims.
package repos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/upscalehq/upscale/hooks"
	"github.com/upscalehq/upscale/names"
)

// Config is set in every app repository.
var Config = [][2]string{
	// Refuse malformed objects (e.g. crafted .gitmodules) before they land
	// in a tenant's repository.
	{"receive.fsckObjects", "true"},
	// Keep every pushed pack as it came instead of exploding small pushes
	// into loose objects: 3x faster for large pushes (git gc --auto, which
	// receive-pack runs, consolidates packs later).
	{"receive.unpackLimit", "1"},
}

// Repos manages repositories under Root. Binary is the absolute path of the
// upscale executable the hook shims exec.
type Repos struct {
	Root   string
	Binary string
}

// Path is where app's bare repository lives. Names are validated, and the
// result is proven to stay under Root.
func (r *Repos) Path(app names.App) (string, error) {
	if err := names.Check("namespace", app.Namespace); err != nil {
		return "", err
	}
	if err := names.Check("application", app.Name); err != nil {
		return "", err
	}
	p := filepath.Join(r.Root, app.Namespace, app.Name+".git")
	if err := Confine(r.Root, p); err != nil {
		return "", err
	}
	return p, nil
}

// Confine returns an error unless path is inside root.
func Confine(root, path string) error {
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return fmt.Errorf("path %q is outside %q", path, root)
	}
	return nil
}

// Create makes app's bare repository with hook shims. An existing directory
// is an error: repositories are never silently reused.
func (r *Repos) Create(ctx context.Context, app names.App) error {
	p, err := r.Path(app)
	if err != nil {
		return err
	}
	if _, err := os.Stat(p); err == nil {
		return fmt.Errorf("repository %s already exists on disk", p)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return fmt.Errorf("creating repository: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(p), ".new-"+app.Name+"-")
	if err != nil {
		return fmt.Errorf("creating repository: %w", err)
	}
	defer os.RemoveAll(tmp)
	// --initial-branch matches the default deploy branch so that a clone of
	// an empty app checks out the branch that deploys.
	if err := git(ctx, "", "init", "--quiet", "--bare", "--initial-branch=master", tmp); err != nil {
		return err
	}
	for _, kv := range Config {
		if err := git(ctx, tmp, "config", kv[0], kv[1]); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(filepath.Join(tmp, "hooks")); err != nil {
		return fmt.Errorf("creating repository: %w", err)
	}
	if _, err := r.writeHooks(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("creating repository: %w", err)
	}
	return nil
}

// Delete removes app's repository. A missing repository is not an error.
func (r *Repos) Delete(app names.App) error {
	p, err := r.Path(app)
	if err != nil {
		return err
	}
	// Rename first so a half-deleted repository is never served.
	trash := filepath.Join(filepath.Dir(p), fmt.Sprintf(".deleted-%s-%d", app.Name, os.Getpid()))
	if err := os.Rename(p, trash); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("deleting repository: %w", err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("deleting repository: %w", err)
	}
	return nil
}

// EnsureHooks rewrites the shims of app's repository when they differ from
// what this binary would write (e.g. the binary moved). It reports whether
// anything changed.
func (r *Repos) EnsureHooks(app names.App) (bool, error) {
	p, err := r.Path(app)
	if err != nil {
		return false, err
	}
	return r.writeHooks(p)
}

func (r *Repos) writeHooks(repo string) (bool, error) {
	dir := filepath.Join(repo, "hooks")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("writing hooks: %w", err)
	}
	changed := false
	for _, h := range []string{hooks.PreReceive, hooks.PostReceive} {
		want := []byte(hooks.Shim(r.Binary, h))
		path := filepath.Join(dir, h)
		if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, want) {
			continue
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, want, 0o755); err != nil {
			return changed, fmt.Errorf("writing hook %s: %w", h, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return changed, fmt.Errorf("writing hook %s: %w", h, err)
		}
		changed = true
	}
	return changed, nil
}

func git(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = Env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("git %s: %v: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Env is the whole environment Upscale gives git: a fixed PATH and nothing
// inherited, so neither the server's nor a client's variables steer git.
func Env(extra ...string) []string {
	return append([]string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/nonexistent",
		"GIT_CONFIG_NOSYSTEM=1",
		"LC_ALL=C",
	}, extra...)
}
