package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/upscalehq/upscale/deploy"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// App is an app with where it answers.
type App struct {
	store.App
	URL string
}

// AppInfo is an app as app info shows it.
type AppInfo struct {
	App
	// Live is the live release, nil when none.
	Live *store.Release
	// HTTPS is the status of the certificate serving the app's hostname;
	// nil when none is asked for.
	HTTPS *CertStatus
	// LastPush is the newest of the last 20 pushes to the deploy branch.
	LastPush *store.Push
}

// QuotaError refuses what would take a namespace over one of its quotas.
type QuotaError struct {
	Namespace string
	Quota     string // "apps"
	Limit     int64
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("namespace %s already has %d app(s), its %s quota; %s", e.Namespace, e.Limit, e.Quota, deploy.Raise(e.Namespace, e.Quota))
}

func (e *QuotaError) Unwrap() error { return store.ErrOverQuota }

func (b *Backend) app(a store.App) App {
	return App{App: a, URL: b.url(names.App{Namespace: a.Namespace, Name: a.Name})}
}

func checkApp(app names.App) error {
	if err := names.Check("namespace", app.Namespace); err != nil {
		return err
	}
	return names.Check("application", app.Name)
}

// CreateApp creates app: its store row and its bare repository with the
// hooks, as one intent: when the repository cannot be made, the row goes
// too.
func (b *Backend) CreateApp(ctx context.Context, who keys.Principal, app names.App) (App, error) {
	if err := checkApp(app); err != nil {
		return App{}, err
	}
	if err := allow(who, keys.AppCreate, keys.Target{Namespace: app.Namespace, App: app.Name}, namespaceNotFound(app.Namespace), ""); err != nil {
		return App{}, err
	}
	a, err := b.cfg.Store.CreateAppWithin(ctx, app.Namespace, app.Name, b.cfg.Quota.Apps)
	switch {
	case errors.Is(err, store.ErrOverQuota):
		limit := b.cfg.Quota.Apps
		if n, err := b.cfg.Store.GetNamespace(ctx, app.Namespace); err == nil && n.Quota.Apps > 0 {
			limit = n.Quota.Apps
		}
		return App{}, &QuotaError{Namespace: app.Namespace, Quota: "apps", Limit: int64(limit)}
	case errors.Is(err, store.ErrNotFound):
		return App{}, errors.New(namespaceNotFound(app.Namespace))
	case errors.Is(err, store.ErrConflict):
		return App{}, fmt.Errorf("app %s already exists", app)
	case err != nil:
		return App{}, err
	}
	if err := b.cfg.Repos.Create(ctx, app); err != nil {
		if derr := b.cfg.Store.DeleteApp(ctx, app.Namespace, app.Name); derr != nil {
			return App{}, fmt.Errorf("creating the repository of %s failed (%v) and so did undoing the app: %w", app, err, derr)
		}
		return App{}, fmt.Errorf("creating the repository of %s: %w", app, err)
	}
	b.manageCert(ctx, app)
	return b.app(a), nil
}

// ListApps lists namespace's apps, or every app when namespace is ""
// (admins), each with its live release and instances.
func (b *Backend) ListApps(ctx context.Context, who keys.Principal, namespace string) ([]App, error) {
	if namespace != "" {
		if err := names.Check("namespace", namespace); err != nil {
			return nil, err
		}
		if err := allow(who, keys.AppList, keys.Target{Namespace: namespace}, namespaceNotFound(namespace), ""); err != nil {
			return nil, err
		}
		if _, err := b.cfg.Store.GetNamespace(ctx, namespace); errors.Is(err, store.ErrNotFound) {
			return nil, errors.New(namespaceNotFound(namespace))
		}
	} else if err := allow(who, keys.AppList, keys.Target{}, "", "app list"); err != nil {
		return nil, err
	}
	all, err := b.cfg.Store.ListApps(ctx, namespace)
	if err != nil {
		return nil, err
	}
	apps := make([]App, 0, len(all))
	for _, a := range all {
		apps = append(apps, b.app(a))
	}
	return apps, nil
}

// getApp is app as the store has it, for who may see its info.
func (b *Backend) getApp(ctx context.Context, who keys.Principal, app names.App) (App, error) {
	if err := checkApp(app); err != nil {
		return App{}, err
	}
	if err := allow(who, keys.AppInfo, keys.Target{Namespace: app.Namespace, App: app.Name}, appNotFound(app), ""); err != nil {
		return App{}, err
	}
	a, err := b.cfg.Store.GetApp(ctx, app.Namespace, app.Name)
	if err != nil {
		return App{}, notFound(err, appNotFound(app))
	}
	return b.app(a), nil
}

// FindApp is app, for who may see its info.
func (b *Backend) FindApp(ctx context.Context, who keys.Principal, app names.App) (App, error) {
	return b.getApp(ctx, who, app)
}

// PushTarget is the app a push by who goes to. One that does not exist is
// created when who may create apps in its namespace, as Dokku creates an
// app on its first push; created says so. Otherwise it is "not found",
// the same words whether the app exists or not.
func (b *Backend) PushTarget(ctx context.Context, who keys.Principal, app names.App) (a App, created bool, err error) {
	if err := checkApp(app); err != nil {
		return App{}, false, err
	}
	target := keys.Target{Namespace: app.Namespace, App: app.Name}
	if err := allow(who, keys.GitPush, target, appNotFound(app), ""); err != nil {
		return App{}, false, err
	}
	got, err := b.cfg.Store.GetApp(ctx, app.Namespace, app.Name)
	if err == nil {
		return b.app(got), false, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return App{}, false, err
	}
	if keys.Authorize(who, keys.AppCreate, target) != nil {
		return App{}, false, &Denied{Msg: appNotFound(app)}
	}
	a, err = b.CreateApp(ctx, who, app)
	if err != nil {
		// A push at the same moment created it first.
		if got, gerr := b.cfg.Store.GetApp(ctx, app.Namespace, app.Name); gerr == nil {
			return b.app(got), false, nil
		}
		return App{}, false, err
	}
	return a, true, nil
}

// AppInfo is app with its last push, live release and instances.
func (b *Backend) AppInfo(ctx context.Context, who keys.Principal, app names.App) (AppInfo, error) {
	a, err := b.getApp(ctx, who, app)
	if err != nil {
		return AppInfo{}, err
	}
	info := AppInfo{App: a}
	// None before the first deploy.
	if rel, err := b.cfg.Store.LiveRelease(ctx, app.Namespace, app.Name); err == nil {
		info.Live = &rel
	}
	pushes, err := b.cfg.Store.ListPushes(ctx, app.Namespace, app.Name, 20)
	if err != nil {
		return info, err
	}
	if list, err := b.cfg.Store.ListCertStatus(ctx); err == nil {
		info.HTTPS = certFor(list, Hostname(app, b.cfg.Domain))
	}
	for _, p := range pushes {
		if p.Ref == "refs/heads/"+a.DeployBranch {
			info.LastPush = &p
			break
		}
	}
	return info, nil
}

// SetDeployBranch makes branch the one whose pushes deploy app.
func (b *Backend) SetDeployBranch(ctx context.Context, who keys.Principal, app names.App, branch string) error {
	if err := checkApp(app); err != nil {
		return err
	}
	if err := CheckBranch(branch); err != nil {
		return err
	}
	if err := allow(who, keys.AppSet, keys.Target{Namespace: app.Namespace, App: app.Name}, appNotFound(app), ""); err != nil {
		return err
	}
	return notFound(b.cfg.Store.SetDeployBranch(ctx, app.Namespace, app.Name, branch), appNotFound(app))
}

// DeleteApp deletes app: what runs of it (when a server runs), its store
// row and its repository.
func (b *Backend) DeleteApp(ctx context.Context, who keys.Principal, app names.App) error {
	if err := checkApp(app); err != nil {
		return err
	}
	if err := allow(who, keys.AppDelete, keys.Target{Namespace: app.Namespace, App: app.Name}, appNotFound(app), ""); err != nil {
		return err
	}
	var err error
	if b.cfg.Apps != nil {
		err = b.cfg.Apps.Delete(ctx, app)
	} else {
		err = b.cfg.Store.DeleteApp(ctx, app.Namespace, app.Name)
	}
	if err != nil {
		return notFound(err, appNotFound(app))
	}
	if err := b.cfg.Repos.Delete(app); err != nil {
		return fmt.Errorf("app %s deleted, but its repository was not removed: %w", app, err)
	}
	return nil
}

// CheckBranch accepts branch names git accepts, minus the oddities no one
// deploys from (a subset of git check-ref-format).
func CheckBranch(br string) error {
	bad := br == "" || len(br) > 100 || strings.HasPrefix(br, "-") || strings.HasPrefix(br, "/") ||
		strings.HasSuffix(br, "/") || strings.HasSuffix(br, ".lock") || strings.HasSuffix(br, ".") ||
		strings.Contains(br, "..") || strings.Contains(br, "//") || strings.Contains(br, "@{") || br == "@"
	for _, c := range br {
		if c <= ' ' || c == 0x7f || strings.ContainsRune("~^:?*[\\", c) {
			bad = true
		}
	}
	if bad {
		return fmt.Errorf("invalid branch name %s", names.Quote(br))
	}
	return nil
}
