package gitd

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/upscalehq/upscale/appspec"
	"github.com/upscalehq/upscale/hooks"
	"github.com/upscalehq/upscale/repos"
	"github.com/upscalehq/upscale/store"
)

// maxHookRequest bounds one hook request (10,000 ref updates fit easily).
const maxHookRequest = 4 << 20

// hookTimeout bounds the checks of one hook request.
const hookTimeout = time.Minute

// serveHook answers one hook client connection.
func (s *Server) serveHook(conn net.Conn) {
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
	defer cancel()
	out := &hookOutput{enc: json.NewEncoder(conn)}
	var req hooks.Request
	if err := json.NewDecoder(io.LimitReader(conn, maxHookRequest)).Decode(&req); err != nil {
		out.exit(out.fail("malformed hook request"))
		return
	}
	p, ok := s.pushes.get(req.PushID)
	if !ok {
		out.exit(out.fail("this push is not known to the server"))
		return
	}
	app, err := s.cfg.Store.GetApp(ctx, p.app.Namespace, p.app.Name)
	if err != nil {
		s.cfg.Log.Error("hook: loading app", "app", p.app.String(), "err", err)
		out.exit(out.fail("app %s is gone; the push is refused", p.app))
		return
	}
	verdicts := hooks.Judge(req.Updates, app.DeployBranch)
	switch req.Hook {
	case hooks.PreReceive:
		out.exit(s.preReceive(ctx, p, req, verdicts, out))
	case hooks.PostReceive:
		out.exit(s.postReceive(ctx, p, verdicts, out))
	default:
		out.exit(out.fail("unknown hook %q", req.Hook))
	}
}

// preReceive decides whether the push may land. Any refusal rejects the
// whole push: git leaves every ref where it was.
func (s *Server) preReceive(ctx context.Context, p push, req hooks.Request, verdicts []hooks.Verdict, out *hookOutput) int {
	refused := false
	for _, v := range verdicts {
		if v.Refuse != "" {
			out.line("error: %s", v.Refuse)
			refused = true
		}
	}
	if refused {
		return out.fail("push rejected; %s is unchanged", p.app)
	}
	qenv, err := quarantineEnv(p.repo, req)
	if err != nil {
		s.cfg.Log.Warn("hook: bad quarantine paths", "app", p.app.String(), "err", err)
		return out.fail("push rejected: %v", err)
	}
	for _, v := range verdicts {
		if !v.Deploy {
			out.line("-----> %s", v.Note)
			continue
		}
		out.line("-----> Checking app.yaml at %s", short(v.New))
		data, problem, err := readAppYAML(ctx, p.repo, v.New, qenv)
		if err != nil {
			s.cfg.Log.Error("hook: reading app.yaml", "app", p.app.String(), "err", err)
			return out.fail("push rejected: the server could not read app.yaml")
		}
		if problem != "" {
			out.line("%s", problem)
			return out.fail("push rejected; %s is unchanged", p.app)
		}
		spec, problems := appspec.Parse(data, s.cfg.Catalog.Names())
		if len(problems) > 0 {
			for _, pr := range problems {
				out.line("%s", pr.String())
			}
			return out.fail("push rejected; %s is unchanged", p.app)
		}
		out.line("       runtime %s, %d instance(s): ok", spec.Runtime, spec.Instances)
	}
	return 0
}

// postReceive records what landed and tells the pusher what happens next.
func (s *Server) postReceive(ctx context.Context, p push, verdicts []hooks.Verdict, out *hookOutput) int {
	var repo *gogit.Repository
	for _, v := range verdicts {
		if v.Refuse != "" || v.New == hooks.ZeroID {
			continue
		}
		if repo == nil {
			var err error
			if repo, err = gogit.PlainOpen(p.repo); err != nil {
				s.cfg.Log.Error("hook: opening repository", "app", p.app.String(), "err", err)
			}
		}
		rec, err := s.cfg.Store.RecordPush(ctx, store.Push{
			Namespace: p.app.Namespace, App: p.app.Name,
			Ref: v.Ref, OldCommit: v.Old, NewCommit: v.New,
			Subject: subject(repo, v.New),
			KeyName: p.principal.Name, KeyFP: p.principal.Fingerprint,
		})
		if err != nil {
			s.cfg.Log.Error("hook: recording push", "app", p.app.String(), "err", err)
			out.line("warning: the push landed but could not be recorded: %v", err)
			continue
		}
		if !v.Deploy {
			continue
		}
		out.line("=====> %s is now at %s %q, pushed by %s", strings.TrimPrefix(v.Ref, "refs/heads/"), short(v.New), rec.Subject, rec.KeyName)
		out.line("       Recorded as push %d. This version of Upscale checks and keeps pushes;", rec.ID)
		out.line("       building and running them arrive with the deploy release. See: app info %s", p.app)
	}
	return 0
}

func subject(repo *gogit.Repository, commit string) string {
	if repo == nil {
		return ""
	}
	c, err := repo.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return ""
	}
	s, _, _ := strings.Cut(strings.TrimSpace(c.Message), "\n")
	return s
}

// quarantineEnv passes git's quarantine variables on to the git we run,
// after proving each path is inside the repository.
func quarantineEnv(repo string, req hooks.Request) ([]string, error) {
	env := []string{"GIT_DIR=" + repo}
	check := func(name, path string) error {
		if path == "" {
			return nil
		}
		if !filepath.IsAbs(path) {
			path = filepath.Join(repo, path)
		}
		if err := repos.Confine(repo, filepath.Clean(path)); err != nil {
			return fmt.Errorf("%s is outside the repository", name)
		}
		return nil
	}
	if err := check("GIT_OBJECT_DIRECTORY", req.ObjectDir); err != nil {
		return nil, err
	}
	if err := check("GIT_QUARANTINE_PATH", req.QuarantinePath); err != nil {
		return nil, err
	}
	if req.AltObjectDirs != "" {
		for _, d := range strings.Split(req.AltObjectDirs, ":") {
			if err := check("GIT_ALTERNATE_OBJECT_DIRECTORIES", d); err != nil {
				return nil, err
			}
		}
	}
	for k, v := range map[string]string{
		"GIT_OBJECT_DIRECTORY":             req.ObjectDir,
		"GIT_ALTERNATE_OBJECT_DIRECTORIES": req.AltObjectDirs,
		"GIT_QUARANTINE_PATH":              req.QuarantinePath,
	} {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env, nil
}

// readAppYAML reads app.yaml at the root of commit with `git cat-file`
// (the pushed objects are still in quarantine, which go-git cannot see).
// problem is a user-facing reason the file cannot be used (missing, too
// big, not a file); err is the server's own failure.
func readAppYAML(ctx context.Context, repo, commit string, env []string) (data []byte, problem string, err error) {
	cmd := exec.CommandContext(ctx, "git", "cat-file", "--batch")
	cmd.Dir = repo
	cmd.Env = repos.Env(env...)
	cmd.Stdin = strings.NewReader(commit + ":app.yaml\n")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	r := bufio.NewReader(stdout)
	header, err := r.ReadString('\n')
	if err != nil {
		return nil, "", fmt.Errorf("git cat-file: %w", err)
	}
	f := strings.Fields(header)
	switch {
	case len(f) == 2 && f[1] == "missing":
		return nil, fmt.Sprintf("app.yaml: missing at the root of %s; add one, e.g. \"runtime: python\" (see docs/app-yaml.md)", short(commit)), nil
	case len(f) != 3:
		return nil, "", fmt.Errorf("git cat-file: unexpected header %q", header)
	case f[1] == "tree":
		return nil, fmt.Sprintf("app.yaml: at the root of %s is a directory, not a file", short(commit)), nil
	case f[1] != "blob":
		return nil, fmt.Sprintf("app.yaml: at the root of %s is a %s, not a file", short(commit), f[1]), nil
	}
	size, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return nil, "", fmt.Errorf("git cat-file: bad size in %q", header)
	}
	if size > appspec.MaxSize {
		return nil, fmt.Sprintf("app.yaml: %d bytes is over the %d KiB limit", size, appspec.MaxSize>>10), nil
	}
	data = make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, "", fmt.Errorf("git cat-file: %w", err)
	}
	return data, "", nil
}

func short(commit string) string {
	if len(commit) > 7 {
		return commit[:7]
	}
	return commit
}

// hookOutput writes replies to the hook client. Write errors (the pusher
// went away) are ignored: git aborts the push on its own then.
type hookOutput struct {
	enc *json.Encoder
}

func (o *hookOutput) line(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	// One reply per line keeps every line a "remote:" line of its own.
	for _, l := range strings.Split(msg, "\n") {
		_ = o.enc.Encode(hooks.Reply{Line: l})
	}
}

func (o *hookOutput) fail(format string, a ...any) int {
	o.line("error: "+format, a...)
	return 1
}

func (o *hookOutput) exit(code int) {
	_ = o.enc.Encode(hooks.Reply{Exit: &code})
}
