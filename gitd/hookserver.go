package gitd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/upscalehq/upscale/appspec"
	"github.com/upscalehq/upscale/hooks"
	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/repos"
	"github.com/upscalehq/upscale/store"
)

// maxHookRequest bounds one hook request (10,000 ref updates fit easily).
const maxHookRequest = 4 << 20

// serveHook answers one hook client connection.
func (s *Server) serveHook(conn net.Conn) {
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HookTimeout)
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
		out.line("-----> Checking app.yaml at %s", msgtext.Short(v.New))
		checkStart := time.Now()
		data, problem, err := repos.Source{Repo: p.repo, Env: qenv, Commit: v.New}.AppYAML(ctx)
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
		if s.cfg.Deploys == nil {
			continue
		}
		if code := s.deploy(ctx, p, req.PushID, v, qenv, spec, time.Since(checkStart), out); code != 0 {
			return code
		}
	}
	return 0
}

// deploy builds and runs the pushed commit before git moves the branch, so
// that a failed build or start rejects the push. The app's lock is held
// until the push ends, which keeps anyone else from moving the branch
// between this check and git's update.
func (s *Server) deploy(ctx context.Context, p push, pushID string, v hooks.Verdict, qenv []string, spec *appspec.Spec, validated time.Duration, out *hookOutput) int {
	unlock, ok := s.cfg.Deploys.TryLock(p.app)
	if !ok {
		out.line("-----> Waiting for another deploy of %s to finish", p.app)
		unlock = s.cfg.Deploys.Lock(p.app)
	}
	s.pushes.holdUntilDone(pushID, unlock)
	cur, err := s.cfg.Repos.Head(ctx, p.app, strings.TrimPrefix(v.Ref, "refs/heads/"))
	if err != nil {
		return out.fail("push rejected: %v", err)
	}
	if cur == "" {
		// To git's hooks a branch not there yet was at the zero id.
		cur = hooks.ZeroID
	}
	if cur != v.Old {
		return out.fail("%s moved while you pushed (another push landed first); fetch, then push again", strings.TrimPrefix(v.Ref, "refs/heads/"))
	}
	src := repos.Source{Repo: p.repo, Env: qenv, Commit: v.New}
	rel, timing, err := s.cfg.Deploys.Push(ctx, p.app, src, spec, p.principal.Name, func(l string) { out.line("%s", l) })
	if err != nil {
		out.line("error: %v", err)
		return out.fail("push rejected; %s is unchanged and its previous release keeps serving", p.app)
	}
	out.line("       checks %s, %s", validated.Round(time.Millisecond), timing)
	out.line("=====> Application deployed: %s (v%d)", s.cfg.Deploys.URL(p.app), rel.Version)
	return 0
}

// postReceive records what landed and tells the pusher what happens next.
func (s *Server) postReceive(ctx context.Context, p push, verdicts []hooks.Verdict, out *hookOutput) int {
	for _, v := range verdicts {
		if v.Refuse != "" || v.New == hooks.ZeroID {
			continue
		}
		// The objects are in the repository by now: no quarantine.
		info, err := repos.Source{Repo: p.repo, Commit: v.New}.Info(ctx)
		if err != nil {
			s.cfg.Log.Error("hook: reading the pushed commit", "app", p.app.String(), "err", err)
		}
		rec, err := s.cfg.Store.RecordPush(ctx, store.Push{
			Namespace: p.app.Namespace, App: p.app.Name,
			Ref: v.Ref, OldCommit: v.Old, NewCommit: v.New,
			Subject: info.Subject,
			KeyName: p.principal.Name, KeyFP: p.principal.Fingerprint,
		})
		if err != nil {
			s.cfg.Log.Error("hook: recording push", "app", p.app.String(), "err", err)
			out.line("warning: the push landed but could not be recorded: %v", err)
			continue
		}
		if v.Deploy && s.cfg.Deploys == nil {
			out.line("=====> %s is now at %s %q, pushed by %s (push %d; this server does not deploy)",
				strings.TrimPrefix(v.Ref, "refs/heads/"), msgtext.Short(v.New), rec.Subject, rec.KeyName, rec.ID)
		}
	}
	return 0
}

// quarantineEnv passes git's quarantine variables on to the git we run,
// after proving each path is inside the repository.
func quarantineEnv(repo string, req hooks.Request) ([]string, error) {
	var env []string
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
