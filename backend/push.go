package backend

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/upscalehq/upscale/appspec"
	"github.com/upscalehq/upscale/deploy"
	"github.com/upscalehq/upscale/hooks"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/repos"
	"github.com/upscalehq/upscale/store"
)

// Deploys is the release engine as pushes and app run drive it (see
// deploy.Deployer).
type Deploys interface {
	// Lock and TryLock take the app's deploy lock; the func unlocks.
	Lock(app names.App) func()
	TryLock(app names.App) (func(), bool)
	// Push builds src and makes it live; a failure is recorded on the
	// release and leaves the live one serving. The caller holds the lock.
	Push(ctx context.Context, app names.App, src repos.Source, spec *appspec.Spec, by string, out func(string)) (store.Release, deploy.Timing, error)
	// Resume runs a stopped app's live release again on fresh instances
	// and records it. The caller holds the lock.
	Resume(ctx context.Context, app names.App, by string, out func(string)) error
	// Event records what happened to app.
	Event(ctx context.Context, app names.App, kind, by, msg string)
}

// PreReceive decides whether a push to app may land, before git moves any
// ref: the refs judged (hooks.Judge), app.yaml of the deploy branch's new
// commit read from git's quarantine and checked and, where a server runs,
// built and rolled out. Progress and what is wrong go to out; the error,
// when not nil, is the line that ends a refused push, and git leaves every
// ref where it was. The app's deploy lock, once taken, is handed to hold:
// the transport releases it when git is done, so nothing else moves the
// branch between this check and git's update.
func (b *Backend) PreReceive(ctx context.Context, who keys.Principal, app names.App, req hooks.Request, hold func(unlock func()), out func(string)) error {
	a, err := b.pushedApp(ctx, who, app)
	if err != nil {
		return err
	}
	verdicts := hooks.Judge(req.Updates, a.DeployBranch)
	refused := false
	for _, v := range verdicts {
		if v.Refuse != "" {
			out("error: " + v.Refuse)
			refused = true
		}
	}
	if refused {
		return fmt.Errorf("push rejected; %s is unchanged", app)
	}
	repo, err := b.cfg.Repos.Path(app)
	if err != nil {
		return fmt.Errorf("push rejected: %v", err)
	}
	qenv, err := quarantineEnv(repo, req)
	if err != nil {
		b.cfg.Log.Warn("hook: bad quarantine paths", "app", app.String(), "err", err)
		return fmt.Errorf("push rejected: %v", err)
	}
	for _, v := range verdicts {
		if !v.Deploy {
			out("-----> " + v.Note)
			continue
		}
		out("-----> Checking app.yaml at " + msgtext.Short(v.New))
		checkStart := time.Now()
		var validated time.Duration
		branch := strings.TrimPrefix(v.Ref, "refs/heads/")
		src := repos.Source{Repo: repo, Env: qenv, Commit: v.New}
		rel, timing, step, err := b.ship(ctx, app, src, who.Name, out, func(spec *appspec.Spec) (bool, error) {
			validated = time.Since(checkStart)
			out(fmt.Sprintf("       runtime %s, %d instance(s): ok", spec.Runtime, spec.Instances))
			if b.cfg.Deploys == nil {
				return false, nil
			}
			unlock, ok := b.cfg.Deploys.TryLock(app)
			if !ok {
				out(fmt.Sprintf("-----> Waiting for another deploy of %s to finish", app))
				unlock = b.cfg.Deploys.Lock(app)
			}
			hold(unlock)
			cur, err := b.cfg.Repos.Head(ctx, app, branch)
			if err != nil {
				return false, fmt.Errorf("push rejected: %v", err)
			}
			if cur == "" {
				// To git's hooks a branch not there yet was at the zero id.
				cur = hooks.ZeroID
			}
			if cur != v.Old {
				return false, fmt.Errorf("%s moved while you pushed (another push landed first); fetch, then push again", branch)
			}
			return true, nil
		})
		switch {
		case step == shipRead:
			b.cfg.Log.Error("hook: reading app.yaml", "app", app.String(), "err", err)
			return errors.New("push rejected: the server could not read app.yaml")
		case step == shipCheck:
			out(err.Error())
			return fmt.Errorf("push rejected; %s is unchanged", app)
		case step == shipReady && err != nil:
			return err
		case step == shipBuild:
			out(fmt.Sprintf("error: %v", err))
			return fmt.Errorf("push rejected; %s is unchanged and its previous release keeps serving", app)
		case step == shipDone:
			out(fmt.Sprintf("       checks %s, %s", validated.Round(time.Millisecond), timing))
			out(b.deployed(app, rel))
		}
	}
	return nil
}

// PostReceive records what landed on app once git moved the refs, and
// tells the pusher what happens next. A push that cannot be recorded has
// landed all the same: out gets a warning, and the error stays nil.
func (b *Backend) PostReceive(ctx context.Context, who keys.Principal, app names.App, req hooks.Request, out func(string)) error {
	a, err := b.pushedApp(ctx, who, app)
	if err != nil {
		return err
	}
	repo, err := b.cfg.Repos.Path(app)
	if err != nil {
		return err
	}
	for _, v := range hooks.Judge(req.Updates, a.DeployBranch) {
		if v.Refuse != "" || v.New == hooks.ZeroID {
			continue
		}
		// The objects are in the repository by now: no quarantine.
		info, err := repos.Source{Repo: repo, Commit: v.New}.Info(ctx)
		if err != nil {
			b.cfg.Log.Error("hook: reading the pushed commit", "app", app.String(), "err", err)
		}
		rec, err := b.cfg.Store.RecordPush(ctx, store.Push{
			Namespace: app.Namespace, App: app.Name,
			Ref: v.Ref, OldCommit: v.Old, NewCommit: v.New,
			Subject: info.Subject,
			KeyName: who.Name, KeyFP: who.Fingerprint,
		})
		if err != nil {
			b.cfg.Log.Error("hook: recording push", "app", app.String(), "err", err)
			out(fmt.Sprintf("warning: the push landed but could not be recorded: %v", err))
			continue
		}
		if v.Deploy && b.cfg.Deploys == nil {
			out(fmt.Sprintf("=====> %s is now at %s %q, pushed by %s (push %d; this server does not deploy)",
				strings.TrimPrefix(v.Ref, "refs/heads/"), msgtext.Short(v.New), rec.Subject, rec.KeyName, rec.ID))
		}
	}
	return nil
}

// Run starts a stopped app's live release again, or builds the deploy
// branch's head again and makes it live, through the same pipeline as a
// push (ship). Where no server runs it is refused with ErrNeedsServer.
func (b *Backend) Run(ctx context.Context, who keys.Principal, app names.App, out func(string)) error {
	if _, err := b.appFor(ctx, who, keys.AppRun, app); err != nil {
		return err
	}
	if b.cfg.Deploys == nil {
		return ErrNeedsServer
	}
	defer b.cfg.Deploys.Lock(app)()
	a, err := b.cfg.Store.GetApp(ctx, app.Namespace, app.Name)
	if err != nil {
		return notFound(err, appNotFound(app))
	}
	if a.Stopped {
		if rel, err := b.cfg.Store.LiveRelease(ctx, app.Namespace, app.Name); err == nil {
			if err := b.cfg.Deploys.Resume(ctx, app, who.Name, out); err != nil {
				return err
			}
			// The closing line every deploy has, so that a script or a
			// person sees it is done.
			out(fmt.Sprintf("=====> Application running again: %s (v%d)", b.url(app), rel.Version))
			return nil
		}
	}
	repo, err := b.cfg.Repos.Path(app)
	if err != nil {
		return err
	}
	head, err := b.cfg.Repos.Head(ctx, app, a.DeployBranch)
	if err != nil {
		return err
	}
	if head == "" {
		return fmt.Errorf("nothing to run: no commit on %s yet; push first", a.DeployBranch)
	}
	rel, _, _, err := b.ship(ctx, app, repos.Source{Repo: repo, Commit: head}, who.Name, out, func(*appspec.Spec) (bool, error) {
		if err := b.cfg.Store.SetStopped(ctx, app.Namespace, app.Name, false); err != nil {
			return false, err
		}
		b.cfg.Deploys.Event(ctx, app, "run", who.Name, "build of "+a.DeployBranch+" at "+msgtext.Short(head))
		return true, nil
	})
	if err != nil {
		return err
	}
	out(b.deployed(app, rel))
	return nil
}

// shipStep is how far ship got.
type shipStep int

const (
	shipRead  shipStep = iota // app.yaml could not be read: the server's fault
	shipCheck                 // app.yaml is wrong: the error says what, a line per problem
	shipReady                 // ready stopped it, with its error or none
	shipBuild                 // the engine's build or roll-out failed
	shipDone                  // live
)

// ship is the one path from a commit to a live release, a push's and app
// run's alike: app.yaml read from src and checked against the catalog,
// then ready (which may take the app's lock and check the branch; false
// stops there), then the engine's build and roll-out.
func (b *Backend) ship(ctx context.Context, app names.App, src repos.Source, by string, out func(string), ready func(*appspec.Spec) (bool, error)) (store.Release, deploy.Timing, shipStep, error) {
	data, problem, err := src.AppYAML(ctx)
	if err != nil {
		return store.Release{}, deploy.Timing{}, shipRead, err
	}
	if problem != "" {
		return store.Release{}, deploy.Timing{}, shipCheck, errors.New(problem)
	}
	spec, problems := appspec.Parse(data, b.cfg.Catalog.Names())
	if len(problems) > 0 {
		return store.Release{}, deploy.Timing{}, shipCheck, problems
	}
	if ok, err := ready(spec); !ok || err != nil {
		return store.Release{}, deploy.Timing{}, shipReady, err
	}
	rel, timing, err := b.cfg.Deploys.Push(ctx, app, src, spec, by, out)
	if err != nil {
		return rel, timing, shipBuild, err
	}
	return rel, timing, shipDone, nil
}

// deployed is the line that ends a deploy.
func (b *Backend) deployed(app names.App, rel store.Release) string {
	return fmt.Sprintf("=====> Application deployed: %s (v%d)", b.url(app), rel.Version)
}

// pushedApp is app as the store has it, for who pushes to it; to whoever
// may not push, it is gone, as it is when deleted since the push began.
func (b *Backend) pushedApp(ctx context.Context, who keys.Principal, app names.App) (store.App, error) {
	gone := fmt.Sprintf("app %s is gone; the push is refused", app)
	if err := checkApp(app); err != nil {
		return store.App{}, err
	}
	if err := allow(who, keys.GitPush, keys.Target{Namespace: app.Namespace, App: app.Name}, gone, ""); err != nil {
		return store.App{}, err
	}
	a, err := b.cfg.Store.GetApp(ctx, app.Namespace, app.Name)
	if err != nil {
		b.cfg.Log.Error("hook: loading app", "app", app.String(), "err", err)
		return store.App{}, errors.New(gone)
	}
	return a, nil
}

// PushTooLarge is what the pusher of a pack over the server's limit of
// limit bytes reads: git itself only says "pack exceeds maximum allowed
// size".
func PushTooLarge(app names.App, limit int64) string {
	return fmt.Sprintf("push refused: it is over this server's limit of %s per push; %s is unchanged", appspec.FormatSize(limit), app)
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
