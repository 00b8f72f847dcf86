package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/router"
)

// pidFile holds the running server's pid, for upscale server stop.
func pidFile(data string) string { return filepath.Join(data, "run", "server.pid") }

// agentFile holds the local agent's binary and flags, as the server ran
// it: what tears it down.
func agentFile(data string) string { return filepath.Join(data, "run", "agent") }

// recordAgent notes the local agent for upscale server stop ("" for none).
func recordAgent(data, bin, args string) {
	if bin == "" {
		os.Remove(agentFile(data))
		return
	}
	os.WriteFile(agentFile(data), []byte(bin+"\n"+args+"\n"), 0o600)
}

// writePID records the server's pid; the returned func removes it.
func writePID(data string) (func(), error) {
	p := pidFile(data)
	if err := os.WriteFile(p, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("pid file: %w", err)
	}
	return func() { os.Remove(p) }, nil
}

// stopCommand is upscale server stop: what make stop runs. HAProxy and
// the containers outlive the server on purpose (a restart adopts them),
// so stopping everything takes more than a signal: the server, then
// HAProxy, then the local agent's containers, bridge and NAT rule.
func stopCommand(opts *options) *cobra.Command {
	return &cobra.Command{
		Use:   "stop",
		Short: "Stop the server on this box and everything it runs here: HAProxy, the local agent's containers, bridge and NAT rule",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return stopAll(cmd.Context(), opts.Data, cmd.OutOrStdout())
		},
	}
}

func stopAll(ctx context.Context, data string, out io.Writer) error {
	if _, err := os.Stat(data); err != nil {
		fmt.Fprintf(out, "Nothing to stop: no data directory %s.\n", data)
		return nil
	}
	var errs []error
	if b, err := os.ReadFile(pidFile(data)); err == nil {
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		switch stopped, err := stopServer(ctx, pid); {
		case err != nil:
			errs = append(errs, err)
		case stopped:
			fmt.Fprintf(out, "Stopped the server (pid %d).\n", pid)
		default:
			fmt.Fprintf(out, "No server runs on %s.\n", data)
		}
	} else {
		fmt.Fprintf(out, "No server runs on %s.\n", data)
	}
	if dir := filepath.Join(data, "router"); isDir(dir) {
		_, running := os.Stat(filepath.Join(dir, "haproxy.pid"))
		if err := router.Halt(dir); err != nil {
			errs = append(errs, fmt.Errorf("stopping HAProxy: %w", err))
		} else if running == nil {
			fmt.Fprintln(out, "Stopped HAProxy.")
		}
	}
	if b, err := os.ReadFile(agentFile(data)); err == nil {
		bin, args, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		argv := append([]string{"--teardown"}, strings.Fields(args)...)
		if b, err := exec.CommandContext(ctx, bin, argv...).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("%s --teardown: %v: %s", bin, err, strings.TrimSpace(string(b))))
		} else {
			os.Remove(agentFile(data))
			fmt.Fprintln(out, "Removed the local agent's containers, bridge and NAT rule.")
		}
	}
	return errors.Join(errs...)
}

// stopServer ends the server of pid as SIGTERM does (running pushes may
// finish), then for good.
func stopServer(ctx context.Context, pid int) (bool, error) {
	if pid <= 1 {
		return false, errors.New("the server's pid file holds no pid")
	}
	// A pid file left by a server that died may name another program by
	// now: only an upscale server is signalled.
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	args := strings.Split(string(cmdline), "\x00")
	if err != nil || len(args) < 2 || !strings.HasPrefix(filepath.Base(args[0]), "upscale") || args[1] != "server" {
		return false, nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return false, nil
	}
	deadline := time.Now().Add(shutdownGrace + 5*time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			break
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return true, nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// alive reports whether pid runs: it exists and is not a zombie, which
// the server is until whoever started it reaps it.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}
