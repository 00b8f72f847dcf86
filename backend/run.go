package backend

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/upscalehq/upscale/deploy"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// Running is what the release engine does to an app that runs (see
// deploy.Deployer). Stop and Restart read who asks from ctx (deploy.WithBy).
type Running interface {
	Stop(ctx context.Context, app names.App, out func(string)) error
	Restart(ctx context.Context, app names.App, out func(string)) error
	PS(ctx context.Context, app names.App) ([]deploy.Process, error)
	Logs(ctx context.Context, app names.App, n int, follow bool, out func(string)) error
	Exec(ctx context.Context, app names.App, argv []string, timeout time.Duration, by string, out, note func(string)) (int, error)
}

// Process is one instance of an app, with what its host says of it, as
// the release engine reports it.
type Process = deploy.Process

// running authorizes who for a on app, which must exist and be run by a
// server: ErrNeedsServer where none runs.
func (b *Backend) running(ctx context.Context, who keys.Principal, a keys.Action, app names.App) error {
	if _, err := b.appFor(ctx, who, a, app); err != nil {
		return err
	}
	if b.cfg.Apps == nil {
		return ErrNeedsServer
	}
	return nil
}

// Stop stops every instance of app; it answers 503 until it runs again.
func (b *Backend) Stop(ctx context.Context, who keys.Principal, app names.App, out func(string)) error {
	if err := b.running(ctx, who, keys.AppStop, app); err != nil {
		return err
	}
	return b.cfg.Apps.Stop(by(ctx, who), app, out)
}

// Restart replaces app's instances with fresh ones of its live release,
// switching once they are healthy.
func (b *Backend) Restart(ctx context.Context, who keys.Principal, app names.App, out func(string)) error {
	if err := b.running(ctx, who, keys.AppRestart, app); err != nil {
		return err
	}
	return b.cfg.Apps.Restart(by(ctx, who), app, out)
}

// Processes are app's instances (never nil).
func (b *Backend) Processes(ctx context.Context, who keys.Principal, app names.App) ([]Process, error) {
	if err := b.running(ctx, who, keys.AppPS, app); err != nil {
		return nil, err
	}
	procs, err := b.cfg.Apps.PS(ctx, app)
	if procs == nil && err == nil {
		procs = []Process{}
	}
	return procs, err
}

// Logs sends app's last n lines per instance to out, merged in time, and
// with follow the new ones until ctx ends.
func (b *Backend) Logs(ctx context.Context, who keys.Principal, app names.App, n int, follow bool, out func(string)) error {
	if n < 0 || n > MaxLogLines {
		return fmt.Errorf("the lines to show must be from 0 to %d, not %d", MaxLogLines, n)
	}
	if err := b.running(ctx, who, keys.AppLogs, app); err != nil {
		return err
	}
	return b.cfg.Apps.Logs(ctx, app, n, follow, out)
}

// Exec runs argv once in a fresh container of app's live release and
// returns its exit status (see deploy.Deployer.Exec): its output goes to
// out, the platform's notes to note. A command stopped at timeout (0: the
// default) is an error wrapping ErrExecTimeout.
func (b *Backend) Exec(ctx context.Context, who keys.Principal, app names.App, argv []string, timeout time.Duration, out, note func(string)) (int, error) {
	if timeout < 0 || timeout > MaxExecTimeout {
		return 0, fmt.Errorf("the time limit must be more than 0 and at most %s, not %s", MaxExecTimeout, timeout)
	}
	if err := b.running(ctx, who, keys.AppExec, app); err != nil {
		return 0, err
	}
	code, err := b.cfg.Apps.Exec(ctx, app, argv, timeout, who.Name, out, note)
	if errors.Is(err, store.ErrNotFound) {
		return code, errors.New(appNotFound(app))
	}
	return code, err
}
