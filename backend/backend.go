// Package backend is Upscale's application layer: its methods are the use
// cases (create a namespace, create an app with its repository, add a
// key, ...). Every method takes the actor first after the context and
// authorizes it with the one policy, keys.Authorize, so every transport —
// the ssh commands, the git hooks, the coming HTTP API — gets the same
// answer, whatever gate it keeps in front.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/upscalehq/upscale/fleet"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/repos"
	"github.com/upscalehq/upscale/runtimes"
	"github.com/upscalehq/upscale/store"
)

// Apps is what runs apps, as far as this layer needs it today.
type Apps interface {
	// Delete deletes the app from the store and takes down its
	// containers, routes and artifacts.
	Delete(ctx context.Context, app names.App) error
	// URL is where users reach app.
	URL(app names.App) string
	Running
	DomainClaims
}

// UsageFunc is a namespace's quotas (its own, those in force) and what it
// holds against them (see deploy.Deployer.Usage).
type UsageFunc func(ctx context.Context, namespace string) (own, inForce, use store.Quota, err error)

// Config is what a Backend acts on.
type Config struct {
	Store store.Store
	Repos *repos.Repos
	// Domain is the apps' parent domain: APP.NS.DOMAIN.
	Domain string
	// Quota is the operator's default quota of a namespace that set none
	// of its own; a 0 in it is no limit.
	Quota store.Quota
	// Apps runs apps; nil where no server runs (the local CLI): deleting
	// an app then only forgets it, and URLs carry no port.
	Apps Apps
	// Usage is nil where no server runs: what a namespace uses is the
	// server's to know.
	Usage UsageFunc
	// Lifecycle rolls out config changes, scales and rolls back; nil
	// where no server runs, where config changes are only stored.
	Lifecycle Lifecycle
	// Catalog is the runtimes app.yaml may name and apps can use.
	Catalog *runtimes.Catalog
	// Deploys builds and rolls out pushes and app run; nil where no
	// server runs, where pushes are only checked and recorded.
	Deploys Deploys
	// Log gets what goes wrong on the server's side of a push; nil
	// discards it.
	Log *slog.Logger
	// Hosts are the hosts as last heard from.
	Hosts func() []fleet.Host
	// Router says in one line how the router is; nil where no server runs.
	Router func(ctx context.Context) string
	// HostOps manages hosts; nil where no server runs.
	HostOps HostOps
	// Certs obtains and renews certificates; nil where no server runs
	// or HTTPS is off.
	Certs Certs
	// Reroute brings the router to the store (an app's HTTPS policy
	// changed); nil where no server runs: the next start routes it.
	Reroute func(ctx context.Context) error
}

// Backend holds the use cases. It is safe for concurrent use.
type Backend struct {
	cfg Config
}

// New returns a Backend over c's dependencies.
func New(c Config) *Backend {
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Backend{cfg: c}
}

// Denied is a refusal by the policy. It unwraps to keys.ErrDenied; its
// text is what the actor is told: for what belongs to someone else, it
// reads exactly like "not found", so a stranger learns nothing.
type Denied struct{ Msg string }

func (d *Denied) Error() string { return d.Msg }
func (d *Denied) Unwrap() error { return keys.ErrDenied }

// allow authorizes who for a on t; denied is what a refused actor reads
// (for admin-only acts, "" and what says it needs an admin key).
func allow(who keys.Principal, a keys.Action, t keys.Target, denied, what string) error {
	if err := keys.Authorize(who, a, t); err != nil {
		if denied == "" {
			denied = fmt.Sprintf("not allowed: %q needs an admin key", what)
		}
		return &Denied{Msg: denied}
	}
	return nil
}

func appNotFound(app names.App) string { return fmt.Sprintf("app %s not found", app) }

func namespaceNotFound(ns string) string { return fmt.Sprintf("namespace %s not found", ns) }

func keyNotFound(ref string) string { return fmt.Sprintf("key %s not found", names.Quote(ref)) }

// notFound maps the store's ErrNotFound to msg, leaving other errors be.
func notFound(err error, msg string) error {
	if errors.Is(err, store.ErrNotFound) {
		return errors.New(msg)
	}
	return err
}

// url is where users reach app.
func (b *Backend) url(app names.App) string {
	if b.cfg.Apps != nil {
		return b.cfg.Apps.URL(app)
	}
	return fmt.Sprintf("http://%s.%s.%s", app.Name, app.Namespace, b.cfg.Domain)
}
