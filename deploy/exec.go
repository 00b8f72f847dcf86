package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/scheduler"
	"github.com/upscalehq/upscale/store"
)

// DefaultExecTimeout is how long a one-off command may run unless the
// caller says otherwise; MaxExecTimeout is the most it may ask for.
const (
	DefaultExecTimeout = time.Hour
	MaxExecTimeout     = 24 * time.Hour
	maxExecCommand     = 16 << 10
)

// ErrExecTimeout is the error of a command stopped at its time limit.
var ErrExecTimeout = errors.New("time limit")

// ExecCommand is the shell command line that runs argv as given: each
// word quoted, so that what the user quoted stays one word. Shell syntax
// (pipes, $VARS, &&) needs an explicit `sh -c '...'`.
func ExecCommand(argv []string) string {
	words := make([]string, len(argv))
	for i, w := range argv {
		words[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(words, " ")
}

// Exec runs argv once in a fresh container of the app's live release, on
// an up host, with the release's environment (app.yaml env, then config
// vars). Each line the command prints goes to out as it comes (stdout and
// stderr merged, in order); notes of the platform's own (a runtime image
// being built) go to note. It returns the command's exit status. The
// container is destroyed when the command ends, when it runs over timeout
// (an error wrapping ErrExecTimeout), or when ctx ends (the ssh session
// went away).
func (d *Deployer) Exec(ctx context.Context, app names.App, argv []string, timeout time.Duration, by string, out, note func(string)) (int, error) {
	if len(argv) == 0 {
		return 0, errors.New("no command given: app exec NS/APP -- COMMAND [ARG...]")
	}
	command := ExecCommand(argv)
	if len(command) > maxExecCommand {
		return 0, fmt.Errorf("the command is %d bytes long, at most %d", len(command), maxExecCommand)
	}
	if timeout <= 0 {
		timeout = DefaultExecTimeout
	}
	rel, err := d.cfg.Store.LiveRelease(ctx, app.Namespace, app.Name)
	if errors.Is(err, store.ErrNotFound) {
		if _, aerr := d.cfg.Store.GetApp(ctx, app.Namespace, app.Name); aerr != nil {
			return 0, aerr
		}
		return 0, fmt.Errorf("app %s has no live release to run a command in; push first", app)
	}
	if err != nil {
		return 0, err
	}
	rt, ok := d.cfg.Catalog.Get(rel.Runtime)
	if !ok {
		return 0, fmt.Errorf("runtime %s is not in this server's catalog", rel.Runtime)
	}
	memory := d.memory(rel.Config.Memory)
	name := execName(app)
	done, err := d.startExec(ctx, app, name, memory)
	if err != nil {
		return 0, err
	}
	defer done()
	hosts, err := d.place(ctx, 1, memory, nil)
	if errors.Is(err, scheduler.ErrNoHosts) {
		return 0, errors.New("no host is up to run the command on")
	}
	if err != nil {
		return 0, err
	}
	host := hosts[0]
	d.placedExec(name, host)
	d.execEvent(ctx, app, by, fmt.Sprintf("exec %s in v%d on %s", msgtext.Truncate(msgtext.OneLine(command), 200), rel.Version, host))

	reply, err := d.cfg.Agents.Exec(ctx, host, agentapi.ExecRequest{
		ReleaseContainer: d.container(name, app, rel, rt, command, Env(rel.Config), memory), Timeout: timeout,
	}, out, note)
	if ctx.Err() != nil {
		// The agent destroys the container when the call is cancelled; in
		// case the cancel never reached it, so does this.
		d.remove(ctx, []store.Instance{{Name: name, Host: host}}, nil)
		return 0, ctx.Err()
	}
	if err != nil {
		if strings.Contains(err.Error(), "longer than its time limit") {
			return 0, fmt.Errorf("%w: the command ran longer than %s and was stopped", ErrExecTimeout, timeout)
		}
		return 0, fmt.Errorf("running the command on %s: %w", host, err)
	}
	return reply.ExitCode, nil
}

// execName is "exec-" and the app, with a random suffix: one-off
// containers never share names with instances.
func execName(app names.App) string {
	b := make([]byte, 3)
	rand.Read(b)
	suffix := "-" + hex.EncodeToString(b)
	prefix := "exec-" + app.Namespace + "-" + app.Name
	if len(prefix)+len(suffix) > 63 {
		prefix = prefix[:63-len(suffix)]
	}
	return strings.TrimRight(prefix, "-") + suffix
}

// execEvent records a one-off command, best effort.
func (d *Deployer) execEvent(ctx context.Context, app names.App, by, msg string) {
	if _, err := d.cfg.Store.RecordEvent(ctx, store.Event{Namespace: app.Namespace, App: app.Name, Kind: "exec", Message: msg, By: by}); err != nil {
		d.cfg.Log.Warn("recording an event", "app", app.String(), "kind", "exec", "err", err)
	}
}
