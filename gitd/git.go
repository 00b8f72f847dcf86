package gitd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/upscalehq/upscale/backend"
	"github.com/upscalehq/upscale/hooks"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/repos"
)

// GitService runs git's own upload-pack and receive-pack, so hooks,
// quarantine, side-band and protocol v2 behave exactly as with OpenSSH.
type GitService struct {
	Repos      *repos.Repos
	SocketPath string // the hook server's socket
	Log        *slog.Logger
	// MaxPushSize bounds a push's pack in bytes; 0 is no bound.
	MaxPushSize int64
	pushes      *pushRegistry
}

type ctxKey int

const gitProtocolKey ctxKey = 0

// withGitProtocol carries the client's GIT_PROTOCOL (already validated)
// to the git service: the one client variable git may see, since it
// only selects the wire protocol version.
func withGitProtocol(ctx context.Context, v string) context.Context {
	return context.WithValue(ctx, gitProtocolKey, v)
}

var gitProtocolPattern = regexp.MustCompile(`^version=[0-9]$`)

// gitProtocol picks GIT_PROTOCOL out of a client's environment, if it is
// well-formed; every other client variable is dropped.
func gitProtocol(environ []string) string {
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "GIT_PROTOCOL="); ok && gitProtocolPattern.MatchString(v) {
			return v
		}
	}
	return ""
}

// Serve implements commands.GitService.
func (g *GitService) Serve(ctx context.Context, service string, app names.App, p keys.Principal, stdin io.Reader, stdout, stderr io.Writer) int {
	sub, ok := map[string]string{"git-receive-pack": "receive-pack", "git-upload-pack": "upload-pack"}[service]
	if !ok {
		fmt.Fprintf(stderr, "error: unknown git service %q\n", service)
		return 1
	}
	path, err := g.Repos.Path(app)
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	var env []string
	if v, _ := ctx.Value(gitProtocolKey).(string); v != "" {
		env = append(env, "GIT_PROTOCOL="+v)
	}
	args := []string{sub, path}
	var id string
	if sub == "receive-pack" {
		id = g.pushes.add(push{principal: p, app: app})
		defer g.pushes.remove(id)
		env = append(env, hooks.EnvSocket+"="+g.SocketPath, hooks.EnvPushID+"="+id)
		if g.MaxPushSize > 0 {
			// git's index-pack stops reading at the limit, before the
			// quarantined objects or any hook: nothing is kept.
			args = append([]string{"-c", "receive.maxInputSize=" + strconv.FormatInt(g.MaxPushSize, 10)}, args...)
		}
	}
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = repos.Env(env...)
	cmd.Dir = path
	cmd.Stdout, cmd.Stderr = stdout, stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		fmt.Fprintf(stderr, "error: starting git: %v\n", err)
		return 1
	}
	if err := cmd.Start(); err != nil {
		g.Log.Error("starting git", "service", sub, "app", app.String(), "err", err)
		fmt.Fprintln(stderr, "error: could not start git on the server")
		return 1
	}
	// Not waited for: the client may keep its end open after git is done;
	// Wait closes the pipe, which ends this copy on its next write.
	// Counted as read, before git gets it: whatever git read is counted
	// by the time it exits.
	received := &countingReader{r: stdin}
	go func() {
		// Large writes: fewer pipe syscalls and wakeups of git per pushed MB
		// (the wrapper keeps os.File.ReadFrom from choosing 32 KiB).
		io.CopyBuffer(struct{ io.Writer }{in}, received, make([]byte, 1<<20))
		in.Close()
	}()
	err = cmd.Wait()
	// git says only "pack exceeds maximum allowed size" (and exits 0): say
	// which limit. More input than the limit that never reached a hook is
	// a pack git refused (the commands before the pack are a few hundred
	// bytes, and a pack just under the limit does reach the hooks).
	if id != "" && g.MaxPushSize > 0 && received.n.Load() > g.MaxPushSize && !g.pushes.reachedHooks(id) {
		fmt.Fprintf(stderr, "error: %s\n", backend.PushTooLarge(app, g.MaxPushSize))
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() > 0:
		return exit.ExitCode()
	}
	g.Log.Warn("git ended", "service", sub, "app", app.String(), "err", err)
	return 1
}

// countingReader counts what it reads; n is read while the copy may
// still run.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
