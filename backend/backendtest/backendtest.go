// Package backendtest holds fakes of what the application layer drives,
// for the unit tests of backend and of its transports.
package backendtest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/upscalehq/upscale/appspec"
	"github.com/upscalehq/upscale/deploy"
	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/repos"
	"github.com/upscalehq/upscale/store"
)

// Deploys is a release engine (backend.Deploys) that builds nothing: a
// push becomes the next live release in the store, with no instances, and
// everything asked of it is recorded in Done.
type Deploys struct {
	Store store.Store
	// Fail, when set, fails every push with it, as a failed build would.
	Fail error

	mu    sync.Mutex
	done  []string
	locks sync.Map // app -> *sync.Mutex
}

// Done is what was asked of d, in order: "push NS/APP COMMIT by WHO",
// "resume NS/APP by WHO", "event NS/APP KIND by WHO: MESSAGE".
func (d *Deploys) Done() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.done...)
}

func (d *Deploys) record(format string, a ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.done = append(d.done, fmt.Sprintf(format, a...))
}

func (d *Deploys) mutex(app names.App) *sync.Mutex {
	l, _ := d.locks.LoadOrStore(app.String(), &sync.Mutex{})
	return l.(*sync.Mutex)
}

// Lock takes app's deploy lock.
func (d *Deploys) Lock(app names.App) func() {
	mu := d.mutex(app)
	mu.Lock()
	return mu.Unlock
}

// TryLock is Lock without waiting.
func (d *Deploys) TryLock(app names.App) (func(), bool) {
	mu := d.mutex(app)
	if !mu.TryLock() {
		return nil, false
	}
	return mu.Unlock, true
}

// Push makes src's commit app's live release, or fails with Fail.
func (d *Deploys) Push(ctx context.Context, app names.App, src repos.Source, spec *appspec.Spec, by string, out func(string)) (store.Release, deploy.Timing, error) {
	d.record("push %s %s by %s", app, msgtext.Short(src.Commit), by)
	out(fmt.Sprintf("-----> Building %s", msgtext.Short(src.Commit)))
	if d.Fail != nil {
		return store.Release{}, deploy.Timing{}, fmt.Errorf("build failed: %w", d.Fail)
	}
	rel, err := Live(ctx, d.Store, app, src.Commit, spec.Runtime, by)
	return rel, deploy.Timing{}, err
}

// Resume marks app running again.
func (d *Deploys) Resume(ctx context.Context, app names.App, by string, out func(string)) error {
	d.record("resume %s by %s", app, by)
	return d.Store.SetStopped(ctx, app.Namespace, app.Name, false)
}

// Event records the event in Done only.
func (d *Deploys) Event(_ context.Context, app names.App, kind, by, msg string) {
	d.record("event %s %s by %s: %s", app, kind, by, msg)
}

// Live records a built release of commit and makes it app's live one,
// with no instances.
func Live(ctx context.Context, st store.Store, app names.App, commit, runtime, by string) (store.Release, error) {
	rel, err := st.CreateRelease(ctx, store.Release{Namespace: app.Namespace, App: app.Name, Commit: commit, Runtime: runtime, By: by,
		Config: store.ReleaseConfig{Note: "push " + msgtext.Short(commit)}})
	if err != nil {
		return rel, err
	}
	if err := st.FinishBuild(ctx, app.Namespace, app.Name, rel.Version, "artifact-"+commit, "digest", 1); err != nil {
		return rel, err
	}
	return rel, st.Activate(ctx, app.Namespace, app.Name, rel.Version, nil)
}

// Stopped makes app a stopped app with a live release, as app stop leaves
// one: what app run starts again.
func Stopped(ctx context.Context, st store.Store, app names.App) error {
	if _, err := Live(ctx, st, app, "0123456789abcdef0123456789abcdef01234567", "python", "test"); err != nil {
		return fmt.Errorf("a live release for %s: %w", app, err)
	}
	return st.SetStopped(ctx, app.Namespace, app.Name, true)
}

// Certs is a certificate engine (backend.Certs) that issues nothing: an
// added certificate goes live in the store's status as it is, unless its
// text is Refuse, which it refuses with RefuseErr.
type Certs struct {
	Store     store.Store
	Refuse    string
	RefuseErr error

	mu   sync.Mutex
	done []string
}

func (c *Certs) record(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = append(c.done, s)
}

// Done is what the engine was asked, in order.
func (c *Certs) Done() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.done...)
}

func (*Certs) NameFor(host string) string { return host }

func (c *Certs) Manage(_ context.Context, names ...string) error {
	for _, n := range names {
		c.record("manage " + n)
	}
	return nil
}

func (c *Certs) Renew(_ context.Context, name string) error {
	c.record("renew " + name)
	return nil
}

func (c *Certs) AddCert(ctx context.Context, name string, pem []byte) (time.Time, error) {
	if c.Refuse != "" && string(pem) == c.Refuse {
		return time.Time{}, c.RefuseErr
	}
	c.record("add " + name)
	notAfter := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	return notAfter, c.Store.SetCertStatus(ctx, store.CertStatus{Name: name, Issuer: "manual", State: store.CertLive, NotAfter: notAfter})
}

func (c *Certs) RemoveCert(ctx context.Context, name string) error {
	c.record("remove " + name)
	return c.Store.SetCertStatus(ctx, store.CertStatus{Name: name, Issuer: "internal", State: store.CertPending})
}
