package router

import (
	"github.com/upscalehq/upscale/schedslice"

	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cliTimeout bounds one runtime API exchange when ctx has no earlier deadline:
// a wedged HAProxy must not hang Apply forever.
const cliTimeout = 10 * time.Second

// errNotRunning says the master socket does not answer: no HAProxy runs for
// this directory (or it is dying).
var errNotRunning = errors.New("haproxy is not running")

// master sends one command line to the master CLI and returns the answer.
func (r *Router) master(ctx context.Context, line string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cliTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", r.masterSock)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errNotRunning, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	// Half-closing tells the CLI this was the last command: it answers,
	// then closes.
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", fmt.Errorf("haproxy master CLI: %w", err)
	}
	if err := c.(*net.UnixConn).CloseWrite(); err != nil {
		return "", fmt.Errorf("haproxy master CLI: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(c, 64<<20))
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		// The first line only: a payload (a private key) is never quoted.
		first, _, _ := strings.Cut(line, "\n")
		return "", fmt.Errorf("haproxy master CLI %q: %w", truncate(first), err)
	}
	return string(out), nil
}

// worker sends a runtime API command to one worker by pid through the
// master, so that a command never lands on an old worker that is stopping.
func (r *Router) worker(ctx context.Context, pid int, cmd string) (string, error) {
	out, err := r.master(ctx, "@!"+strconv.Itoa(pid)+" "+cmd)
	if err == nil && strings.HasPrefix(out, "Can't find the target PID") {
		err = fmt.Errorf("haproxy worker %d is gone", pid)
	}
	return out, err
}

// do runs a command whose success is answered by nothing at all, or by
// exactly ok; anything else is HAProxy's error message.
func (r *Router) do(ctx context.Context, pid int, cmd, ok string) error {
	out, err := r.worker(ctx, pid, cmd)
	if err != nil {
		return err
	}
	if got := strings.TrimSpace(out); got != ok {
		return fmt.Errorf("haproxy %q: %s", cmd, truncate(got))
	}
	return nil
}

func (r *Router) showProc(ctx context.Context) (procs, error) {
	out, err := r.master(ctx, "show proc")
	if err != nil {
		return procs{}, err
	}
	return parseProc(out)
}

// launch starts a master-worker HAProxy that routes st. -D daemonizes it
// and setsid takes it out of our session, so it outlives this process and
// its terminal; the parent exits only once the listeners are bound, so a
// taken port is an error here.
func (r *Router) launch(ctx context.Context, st *state) (procs, error) {
	if err := r.writeFiles(st); err != nil {
		return procs{}, err
	}
	if err := r.check(ctx); err != nil {
		return procs{}, err
	}
	logPath := r.path("haproxy.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return procs{}, err
	}
	defer logf.Close()
	// Not CommandContext: killing the launcher on cancellation could leave
	// a half-started daemon behind.
	cmd := exec.Command(r.bin, "-W", "-D", "-f", r.cfgPath, "-S", r.masterSock+",mode,600")
	cmd.Dir = r.cfg.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logPath)
		return procs{}, fmt.Errorf("start haproxy: %w: %s", err, alerts(out))
	}
	p, err := r.waitProc(ctx, func(p procs) bool { return p.worker != 0 })
	if err != nil {
		return procs{}, fmt.Errorf("start haproxy: %w", err)
	}
	r.cfg.Log.Info("haproxy started", "dir", r.cfg.Dir, "master", p.masterPID, "worker", p.worker, "addr", r.bind)
	r.quicken(p)
	return p, nil
}

// reload rewrites the configuration for st and has the master start a new
// worker on it. Listeners pass to the new worker over the stats socket
// (expose-fd listeners); the old one finishes its requests, bounded by
// hard-stop-after. The config is checked first: a failed reload would
// leave the master in wait mode.
func (r *Router) reload(ctx context.Context, st *state) (procs, error) {
	before, err := r.showProc(ctx)
	if err != nil {
		return procs{}, err
	}
	if err := r.writeFiles(st); err != nil {
		return procs{}, err
	}
	if err := r.check(ctx); err != nil {
		return procs{}, err
	}
	// The master re-executes itself: the connection closes without a word.
	if _, err := r.master(ctx, "reload"); errors.Is(err, errNotRunning) {
		return procs{}, err
	}
	p, err := r.waitProc(ctx, func(p procs) bool { return p.reloads > before.reloads })
	if err != nil {
		return procs{}, fmt.Errorf("reload haproxy: %w", err)
	}
	if p.failed > 0 || p.worker == 0 || p.worker == before.worker {
		return procs{}, fmt.Errorf("reload haproxy: the new worker did not start (see %s)", r.cfgPath)
	}
	r.cfg.Log.Info("haproxy reloaded", "worker", p.worker, "old", p.old)
	return p, nil
}

// waitProc polls "show proc" until done holds, tolerating the moments when
// the master re-executes and its socket does not answer.
func (r *Router) waitProc(ctx context.Context, done func(procs) bool) (procs, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		p, err := r.showProc(ctx)
		if err == nil && done(p) {
			return p, nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return procs{}, err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// check runs "haproxy -c" on the written configuration.
func (r *Router) check(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, r.bin, "-c", "-q", "-f", r.cfgPath).CombinedOutput()
	if err != nil {
		return fmt.Errorf("haproxy rejects %s: %w: %s", r.cfgPath, err, alerts(out))
	}
	return nil
}

// alerts keeps the lines of HAProxy's output that say what went wrong.
func alerts(out []byte) string {
	var keep []string
	for l := range strings.Lines(string(out)) {
		if strings.Contains(l, "[ALERT]") {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	if len(keep) == 0 {
		return strings.TrimSpace(string(out))
	}
	return strings.Join(keep, "; ")
}

// ourPID reports whether pid is a live HAProxy running our configuration:
// pid files outlive their processes, and pids are reused.
func (r *Router) ourPID(pid int) bool {
	if pid <= 0 {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	if i := bytes.LastIndexByte(stat, ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	args := strings.Split(string(cmdline), "\x00")
	return strings.Contains(args[0], "haproxy") && slices.Contains(args, r.cfgPath)
}

func (r *Router) pidFromFile() int {
	b, err := os.ReadFile(r.path("haproxy.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// kill signals the pids that are still ours and waits for them to go.
func (r *Router) kill(pids []int, sig syscall.Signal, wait time.Duration) []int {
	for _, pid := range pids {
		if r.ourPID(pid) {
			syscall.Kill(pid, sig)
		}
	}
	deadline := time.Now().Add(wait)
	for {
		var alive []int
		for _, pid := range pids {
			if r.ourPID(pid) {
				alive = append(alive, pid)
			}
		}
		if len(alive) == 0 || time.Now().After(deadline) {
			return alive
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// quicken asks for the short scheduler slice (schedslice) for the master
// and the worker: a worker woken by a request then preempts a deploy's
// work at once instead of waiting out its slice. Workers of later reloads
// inherit it from the master. Without it HAProxy still routes, a little
// slower while neighbours deploy: a warning, not an error.
func (r *Router) quicken(p procs) {
	for _, pid := range []int{p.masterPID, p.worker} {
		if err := schedslice.SetProcess(pid, schedslice.Short); err != nil {
			r.cfg.Log.Warn("haproxy keeps the default scheduler slice", "pid", pid, "err", err)
		}
	}
}
