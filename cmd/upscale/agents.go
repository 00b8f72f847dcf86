package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/upscalehq/upscale/bus"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// agentSupervisor runs this box's own upscale-agent, so that one machine
// needs nothing but `upscale server`, and restarts it when it dies. Its
// containers outlive it either way: the next agent adopts them.
type agentSupervisor struct {
	so       *serverOptions
	embedded *bus.Embedded
	log      *slog.Logger
	output   io.Writer // where the agent's own log lines go
	bin      string    // "" when there is no local agent
	host     string

	mu   sync.Mutex
	proc *os.Process
	done chan struct{}
}

func newAgentSupervisor(so *serverOptions, embedded *bus.Embedded, log *slog.Logger, output io.Writer) *agentSupervisor {
	a := &agentSupervisor{so: so, embedded: embedded, log: log, output: output, host: localHostName(), done: make(chan struct{})}
	switch so.Agent {
	case "none":
	case "auto":
		if exe, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(exe), "upscale-agent"); isFile(p) {
				a.bin = p
			}
		}
	default:
		a.bin = so.Agent
	}
	return a
}

// register records this box as a host when it runs its own agent, with
// the subnet the agent uses.
func (a *agentSupervisor) register(ctx context.Context, st store.Store) error {
	if a.bin == "" || a.embedded == nil {
		return nil
	}
	subnet := "10.77.0.0/24"
	args := strings.Fields(a.so.AgentArgs)
	for i, f := range args {
		if f == "--subnet" && i+1 < len(args) {
			subnet = args[i+1]
		} else if v, ok := strings.CutPrefix(f, "--subnet="); ok {
			subnet = v
		}
	}
	if _, err := st.GetHost(ctx, a.host); err == nil {
		return nil
	}
	addr := a.so.Advertise
	if addr == "" {
		addr = "127.0.0.1"
	}
	_, err := st.AddHost(ctx, store.Host{Name: a.host, Address: addr, Subnet: subnet, Provider: "local"})
	if err != nil {
		return fmt.Errorf("recording this box as host %s: %w", a.host, err)
	}
	return nil
}

// run keeps the local agent running until ctx ends.
func (a *agentSupervisor) run(ctx context.Context) error {
	defer close(a.done)
	if a.bin == "" {
		if a.so.Agent != "none" {
			a.log.Warn("no local upscale-agent next to this binary: apps run only on hosts added with hosts add (or pass --agent PATH)")
		}
		<-ctx.Done()
		return nil
	}
	if a.embedded == nil {
		a.log.Warn("with --bus, start upscale-agent yourself with its own credentials")
		<-ctx.Done()
		return nil
	}
	creds, err := a.embedded.AgentCredentials(a.host)
	if err != nil {
		return err
	}
	credPath := filepath.Join(a.so.Data, "bus", "agent-"+a.host+".json")
	if err := creds.Write(credPath); err != nil {
		return err
	}
	for backoff := time.Second; ; backoff = min(backoff*2, 30*time.Second) {
		started := time.Now()
		err := a.once(ctx, credPath)
		if ctx.Err() != nil {
			return nil
		}
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 3 {
			a.log.Error("local upscale-agent's credentials were revoked; not restarting it")
			<-ctx.Done()
			return nil
		}
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		a.log.Error("local upscale-agent exited; restarting", "err", err, "in", backoff.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
	}
}

func (a *agentSupervisor) once(ctx context.Context, credPath string) error {
	args := append([]string{"--credentials", credPath, "--name", a.host}, strings.Fields(a.so.AgentArgs)...)
	cmd := exec.Command(a.bin, args...)
	cmd.Stdout, cmd.Stderr = a.output, a.output
	// Its own process group: a Ctrl-C at the server's terminal must not
	// reach the agent before the server has finished with it. It gets
	// SIGTERM when the server dies (killed, crashed) and stops cleanly, as
	// under systemd: left running, it would hold this host's containers
	// where the next server's agent cannot take them over. The kernel
	// sends that signal when the thread that started the agent ends, so
	// this goroutine keeps its thread while the agent runs.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return err
	}
	a.mu.Lock()
	a.proc = cmd.Process
	a.mu.Unlock()
	a.log.Info("local upscale-agent started", "host", a.host, "pid", cmd.Process.Pid)
	stop := context.AfterFunc(ctx, func() { cmd.Process.Signal(syscall.SIGTERM) })
	defer stop()
	return cmd.Wait()
}

// stop ends the local agent and waits for it (up to 20 s).
func (a *agentSupervisor) stop() {
	a.mu.Lock()
	p := a.proc
	a.mu.Unlock()
	if p != nil {
		p.Signal(syscall.SIGTERM)
	}
	select {
	case <-a.done:
	case <-time.After(20 * time.Second):
		if p != nil {
			p.Kill()
		}
	}
}

// localHostName is this machine's name as a host name on the bus.
func localHostName() string {
	h, _ := os.Hostname()
	h = strings.ToLower(h)
	var b strings.Builder
	for _, c := range h {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' {
			b.WriteRune(c)
		} else if c == '.' {
			break
		} else {
			b.WriteRune('-')
		}
	}
	name := strings.Trim(b.String(), "-")
	if len(name) > 40 {
		name = name[:40]
	}
	if names.Check("host", name) != nil {
		name = "local"
	}
	return name
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
