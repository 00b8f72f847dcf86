package backend

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/upscalehq/upscale/deploy"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// Lifecycle is what changes a running app: the release engine's config
// roll-outs, scaling and rollbacks (see deploy.Deployer). Who asks travels
// in ctx (deploy.WithBy); the backend puts the actor there.
type Lifecycle interface {
	SetConfig(ctx context.Context, app names.App, set map[string]string, unset []string, deploy bool, out func(string)) error
	Scale(ctx context.Context, app names.App, change map[string]int, out func(string)) error
	Rollback(ctx context.Context, app names.App, version int, out func(string)) (store.Release, error)
}

// ErrNeedsServer refuses, where no server runs (the local CLI), what only
// the server can do: roll out a release, scale, roll back. Transports say
// where to run it instead.
var ErrNeedsServer = errors.New("this runs on the server, where apps run")

// Limits of config vars.
const (
	MaxConfigValue = 32 << 10  // bytes per value
	MaxConfigTotal = 256 << 10 // bytes of every name and value of an app
	MaxConfigVars  = 500
)

var configKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// reservedKeys are set by the platform in every container.
var reservedKeys = []string{"PORT"}

// CheckConfigKey says what is wrong with a config var name, in one line.
func CheckConfigKey(k string) error {
	if !configKey.MatchString(k) || len(k) > 256 {
		return fmt.Errorf("invalid config var name %s: use letters, digits and _, not starting with a digit (like DATABASE_URL)", names.Quote(k))
	}
	if slices.Contains(reservedKeys, strings.ToUpper(k)) {
		return fmt.Errorf("config var %s is reserved: the platform sets it in every container", k)
	}
	return nil
}

// CheckConfigValue says what is wrong with k's value v, in one line.
func CheckConfigValue(k, v string) error {
	if len(v) > MaxConfigValue {
		return fmt.Errorf("config var %s is too large: %d bytes, the limit is %d bytes (32 KiB) per value", k, len(v), MaxConfigValue)
	}
	if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
		return fmt.Errorf("config var %s: the value must be UTF-8 text without NUL bytes", k)
	}
	return nil
}

// appFor is app as the store has it, for who may do a on it; to whoever
// may not, it does not exist.
func (b *Backend) appFor(ctx context.Context, who keys.Principal, a keys.Action, app names.App) (store.App, error) {
	if err := checkApp(app); err != nil {
		return store.App{}, err
	}
	if err := allow(who, a, keys.Target{Namespace: app.Namespace, App: app.Name}, appNotFound(app), ""); err != nil {
		return store.App{}, err
	}
	st, err := b.cfg.Store.GetApp(ctx, app.Namespace, app.Name)
	return st, notFound(err, appNotFound(app))
}

// by is ctx carrying who, for the releases and events the engine records.
func by(ctx context.Context, who keys.Principal) context.Context {
	return deploy.WithBy(ctx, who.Name)
}

// ConfigVars are app's config vars (never nil).
func (b *Backend) ConfigVars(ctx context.Context, who keys.Principal, app names.App) (map[string]string, error) {
	if _, err := b.appFor(ctx, who, keys.ConfigRead, app); err != nil {
		return nil, err
	}
	vars, err := b.cfg.Store.GetConfig(ctx, app.Namespace, app.Name)
	if vars == nil && err == nil {
		vars = map[string]string{}
	}
	return vars, err
}

// ConfigVar is the value of app's config var k.
func (b *Backend) ConfigVar(ctx context.Context, who keys.Principal, app names.App, k string) (string, error) {
	vars, err := b.ConfigVars(ctx, who, app)
	if err != nil {
		return "", err
	}
	v, ok := vars[k]
	if !ok {
		return "", fmt.Errorf("config var %s is not set on %s", names.Quote(k), app)
	}
	return v, nil
}

// SetConfig sets app's config vars in set and, with deploy, rolls out a
// release with them (see deploy.Deployer.SetConfig); progress goes to out.
// Where no server runs it stores them only, and refuses deploy with
// ErrNeedsServer.
func (b *Backend) SetConfig(ctx context.Context, who keys.Principal, app names.App, set map[string]string, deploy bool, out func(string)) error {
	for _, k := range slices.Sorted(maps.Keys(set)) {
		if err := CheckConfigKey(k); err != nil {
			return err
		}
		if err := CheckConfigValue(k, set[k]); err != nil {
			return err
		}
	}
	if _, err := b.appFor(ctx, who, keys.ConfigWrite, app); err != nil {
		return err
	}
	if err := b.checkConfigTotal(ctx, app, set); err != nil {
		return err
	}
	return b.changeConfig(ctx, who, app, set, nil, deploy, out)
}

// UnsetConfig removes app's config vars named in gone, each of which must
// be set, and rolls out like SetConfig.
func (b *Backend) UnsetConfig(ctx context.Context, who keys.Principal, app names.App, gone []string, deploy bool, out func(string)) error {
	if _, err := b.appFor(ctx, who, keys.ConfigWrite, app); err != nil {
		return err
	}
	vars, err := b.cfg.Store.GetConfig(ctx, app.Namespace, app.Name)
	if err != nil {
		return err
	}
	var unset []string
	for _, k := range gone {
		if _, ok := vars[k]; !ok {
			return fmt.Errorf("config var %s is not set on %s", names.Quote(k), app)
		}
		if !slices.Contains(unset, k) {
			unset = append(unset, k)
		}
	}
	return b.changeConfig(ctx, who, app, nil, unset, deploy, out)
}

// checkConfigTotal refuses what would make the app's vars too many or too
// large as a whole (every container gets them all).
func (b *Backend) checkConfigTotal(ctx context.Context, app names.App, set map[string]string) error {
	vars, err := b.cfg.Store.GetConfig(ctx, app.Namespace, app.Name)
	if err != nil {
		return err
	}
	all := maps.Clone(vars)
	if all == nil {
		all = map[string]string{}
	}
	maps.Copy(all, set)
	total := 0
	for k, v := range all {
		total += len(k) + len(v)
	}
	if len(all) > MaxConfigVars {
		return fmt.Errorf("%s would have %d config vars; the limit is %d", app, len(all), MaxConfigVars)
	}
	if total > MaxConfigTotal {
		return fmt.Errorf("%s's config vars would take %d bytes; the limit is %d bytes (256 KiB) in all", app, total, MaxConfigTotal)
	}
	return nil
}

func (b *Backend) changeConfig(ctx context.Context, who keys.Principal, app names.App, set map[string]string, unset []string, deploy bool, out func(string)) error {
	if b.cfg.Lifecycle == nil {
		if deploy {
			return ErrNeedsServer
		}
		_, err := b.cfg.Store.SetConfig(ctx, app.Namespace, app.Name, set, unset)
		if err == nil {
			out("-----> stored; the next release applies it")
		}
		return err
	}
	return b.cfg.Lifecycle.SetConfig(by(ctx, who), app, set, unset, deploy, out)
}

// Releases are app's newest limit releases (0: all), newest first.
func (b *Backend) Releases(ctx context.Context, who keys.Principal, app names.App, limit int) ([]store.Release, error) {
	if _, err := b.appFor(ctx, who, keys.ReleasesList, app); err != nil {
		return nil, err
	}
	return b.cfg.Store.ListReleases(ctx, app.Namespace, app.Name, limit)
}

// Rollback makes release version's artifact and config live again as a
// new release (0: the newest before the live one that did not fail).
func (b *Backend) Rollback(ctx context.Context, who keys.Principal, app names.App, version int, out func(string)) (store.Release, error) {
	if _, err := b.appFor(ctx, who, keys.Rollback, app); err != nil {
		return store.Release{}, err
	}
	if b.cfg.Lifecycle == nil {
		return store.Release{}, ErrNeedsServer
	}
	return b.cfg.Lifecycle.Rollback(by(ctx, who), app, version, out)
}

// Scale sets how many instances of each process type in change run (see
// deploy.Deployer.Scale).
func (b *Backend) Scale(ctx context.Context, who keys.Principal, app names.App, change map[string]int, out func(string)) error {
	if _, err := b.appFor(ctx, who, keys.AppScale, app); err != nil {
		return err
	}
	if b.cfg.Lifecycle == nil {
		return ErrNeedsServer
	}
	return b.cfg.Lifecycle.Scale(by(ctx, who), app, change, out)
}

// Events are what happened to app, newest first, at most limit (0: all).
func (b *Backend) Events(ctx context.Context, who keys.Principal, app names.App, limit int) ([]store.Event, error) {
	if _, err := b.appFor(ctx, who, keys.AppEvents, app); err != nil {
		return nil, err
	}
	return b.cfg.Store.ListEvents(ctx, app.Namespace, app.Name, limit)
}
