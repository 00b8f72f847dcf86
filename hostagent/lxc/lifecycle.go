// Start, stop, wait and destroy.

package lxc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	golxc "github.com/lxc/go-lxc"
	"golang.org/x/sys/unix"
)

// lxc returns the liblxc handle, opening it on first use (adopted
// containers).
func (c *ctr) lxc(lxcpath string) (*golxc.Container, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lx != nil {
		return c.lx, nil
	}
	if c.gone {
		return nil, fmt.Errorf("lxc: %s: %w", c.name, ErrNotFound)
	}
	lx, err := golxc.NewContainer(c.name, lxcpath)
	if err != nil {
		return nil, fmt.Errorf("lxc: %s: liblxc: %w", c.name, err)
	}
	c.lx = lx
	return lx, nil
}

// Start runs the container's init and returns once LXC reports it
// running; it does not wait for the app to be ready. Starting a running
// container is a no-op.
//
// lxc-start is exec'd rather than called through go-lxc's Start: liblxc
// forks the calling process to become the container's monitor, which lives
// as long as the container. Forked from the agent, every monitor would keep
// a copy-on-write snapshot of the agent's whole Go heap (and its signal
// handlers and threads' locks); exec'd, it is a small C process.
func (r *Runtime) Start(ctx context.Context, name string) error {
	c, err := r.get(name)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	lx, err := c.lxc(r.cfg.LXCPath)
	if err != nil {
		return err
	}
	switch lx.State() {
	case golxc.STOPPED:
	case golxc.STOPPING:
		// An app that just exited: LXC is still tearing the old run down.
		if err := r.waitStopped(c, lx); err != nil {
			return err
		}
	default:
		return nil
	}
	root, err := os.OpenRoot(filepath.Join(c.dir, "upper"))
	if err != nil {
		return fmt.Errorf("lxc: start %s: %w", name, err)
	}
	defer root.Close()
	for _, f := range []string{exitName, oomName} {
		if err := root.Remove(filepath.Join(stateDirIn[1:], f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("lxc: start %s: %w", name, err)
		}
	}
	if err := r.reopenLog(c, root); err != nil {
		return fmt.Errorf("lxc: start %s: log: %w", name, err)
	}
	logPath := filepath.Join(c.dir, lxcLogFile)
	os.Remove(logPath)
	cmd := exec.CommandContext(ctx, r.lxcStart, "-n", name, "-P", r.cfg.LXCPath, "-o", logPath, "-l", "ERROR")
	// The monitor inherits this environment; nothing of the agent's belongs
	// there.
	cmd.Env = []string{"PATH=" + defaultPath}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// lxc-start daemonizes after the container runs; the monitor closes the
	// inherited output, but do not let a stray holder stall us.
	cmd.WaitDelay = 2 * time.Second
	started := time.Now().UTC()
	if err := cmd.Run(); err != nil {
		detail := strings.TrimSpace(out.String())
		if b, _ := os.ReadFile(logPath); len(b) > 0 {
			detail = strings.TrimSpace(string(tailBytes(b, 2048)))
		}
		return fmt.Errorf("lxc: start %s: %w: %s", name, err, detail)
	}
	c.mu.Lock()
	c.meta.StartedAt = started
	c.meta.ExitCode = -1
	m := c.meta
	c.mu.Unlock()
	if err := writeMeta(c.dir, m); err != nil {
		return fmt.Errorf("lxc: start %s: %w", name, err)
	}
	r.readyLater(c, started)
	return nil
}

func tailBytes(b []byte, n int) []byte {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return b
}

// Stop sends SIGTERM to the container's init (the launcher forwards it to
// the app) and SIGKILLs the container if it is still running after grace.
// A cancelled ctx ends the grace early. Stopping a stopped container is a
// no-op.
func (r *Runtime) Stop(ctx context.Context, name string, grace time.Duration) error {
	c, err := r.get(name)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	return r.stopCtr(ctx, c, grace)
}

func (r *Runtime) stopCtr(ctx context.Context, c *ctr, grace time.Duration) error {
	lx, err := c.lxc(r.cfg.LXCPath)
	if err != nil {
		return err
	}
	if !lx.Running() {
		return nil
	}
	exited := false
	if grace > 0 {
		pidfd, err := lx.InitPidFd()
		if err == nil {
			defer pidfd.Close()
			err = unix.PidfdSendSignal(int(pidfd.Fd()), unix.SIGTERM, nil, 0)
		}
		if err != nil {
			if !lx.Running() {
				return r.waitStopped(c, lx)
			}
			return fmt.Errorf("lxc: stop %s: SIGTERM: %w", c.name, err)
		}
		gctx, cancel := context.WithTimeout(ctx, grace)
		exited = waitPidfd(gctx, pidfd) == nil
		cancel()
	}
	if !exited {
		if err := lx.Stop(); err != nil && lx.Running() {
			return fmt.Errorf("lxc: stop %s: %w", c.name, err)
		}
		// Killed before the launcher could record anything.
		c.mu.Lock()
		c.meta.ExitCode = 128 + int(syscall.SIGKILL)
		m := c.meta
		c.mu.Unlock()
		if err := writeMeta(c.dir, m); err != nil {
			return fmt.Errorf("lxc: stop %s: %w", c.name, err)
		}
	}
	return r.waitStopped(c, lx)
}

// waitPidfd returns nil once the process behind pidfd has exited.
func waitPidfd(ctx context.Context, pidfd *os.File) error {
	fds := []unix.PollFd{{Fd: int32(pidfd.Fd()), Events: unix.POLLIN}}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		wait := 100 * time.Millisecond
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			wait = max(time.Until(dl), time.Millisecond)
		}
		n, err := unix.Poll(fds, int(wait/time.Millisecond))
		if err != nil && err != unix.EINTR {
			return err
		}
		if n > 0 {
			return nil
		}
	}
}

// waitStopped waits for LXC to finish tearing the container down after its
// init is gone (network, cgroups, mounts).
func (r *Runtime) waitStopped(c *ctr, lx *golxc.Container) error {
	deadline := time.Now().Add(teardownTimeout)
	for lx.State() != golxc.STOPPED {
		if time.Now().After(deadline) {
			return fmt.Errorf("lxc: %s still %s after %v", c.name, lx.State(), teardownTimeout)
		}
		time.Sleep(pollInterval)
	}
	return nil
}

// Wait blocks until the container stops and returns its exit status (-1
// when unknown). It returns at once for a stopped container.
func (r *Runtime) Wait(ctx context.Context, name string) (int, error) {
	c, err := r.get(name)
	if err != nil {
		return -1, err
	}
	lx, err := c.lxc(r.cfg.LXCPath)
	if err != nil {
		return -1, err
	}
	for lx.Running() {
		pidfd, err := lx.InitPidFd()
		if err != nil {
			// Between states (starting, stopping): poll.
			select {
			case <-ctx.Done():
				return -1, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		err = waitPidfd(ctx, pidfd)
		pidfd.Close()
		if err != nil {
			return -1, err
		}
		if err := r.waitStopped(c, lx); err != nil {
			return -1, err
		}
	}
	return r.status(c).ExitCode, nil
}

// Destroy stops the container if needed (SIGKILL, no grace) and removes
// its directory, which frees its address.
func (r *Runtime) Destroy(ctx context.Context, name string) error {
	c, err := r.get(name)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	if err := r.stopCtr(ctx, c, 0); err != nil {
		return err
	}
	if err := r.setPort(false, r.port(c)); err != nil {
		return fmt.Errorf("lxc: destroy %s: %w", name, err)
	}
	c.release()
	// Everything but our record first: if removal fails halfway the
	// address stays reserved and Destroy can be retried.
	entries, err := os.ReadDir(c.dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("lxc: destroy %s: %w", name, err)
	}
	for _, e := range entries {
		if e.Name() == metaFile {
			continue
		}
		if err := os.RemoveAll(filepath.Join(c.dir, e.Name())); err != nil {
			return fmt.Errorf("lxc: destroy %s: %w", name, err)
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("lxc: destroy %s: %w", name, err)
	}
	// liblxc leaves its per-container lock file behind.
	os.Remove(filepath.Join("/run/lxc/lock", r.cfg.LXCPath, "."+name))
	r.mu.Lock()
	delete(r.ctrs, name)
	r.mu.Unlock()
	return nil
}
