// Package rig starts a real `upscale server` and drives it with the real
// OpenSSH client and git, for the end-to-end tests and the benchmarks.
// Everything it makes lives under directories named upscale-e2e-* so that
// `make clean-test` can find leftovers of a crashed run.
package rig

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/upscalehq/upscale/router"
)

// TB is the part of testing.TB the rig needs, so the benchmarks (a plain
// program) can use it too.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

var _ TB = (testing.TB)(nil)

// Build compiles cmd/upscale and cmd/upscale-agent into dir and returns
// the path of upscale; upscale-agent sits next to it, where the server
// looks for it.
func Build(dir string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	for _, pkg := range []string{"upscale", "upscale-agent"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, pkg), "./cmd/"+pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return filepath.Join(dir, "upscale"), nil
}

// Missing lists the programs the rig needs that are not installed.
func Missing() []string {
	var out []string
	for _, p := range []string{"git", "ssh", "ssh-keygen", "haproxy", "lxc-start", "debootstrap"} {
		if _, err := exec.LookPath(p); err != nil {
			out = append(out, p)
		}
	}
	return out
}

// Server is a running `upscale server`.
type Server struct {
	Bin  string
	Data string
	Port int
	Args []string // extra server flags
	// With an agent (StartWithAgent): where apps answer and what the
	// agent made, for teardown.
	HTTPPort int
	Agent    *Agent
	// Wrap, when set, is the command the server runs under (its argv
	// follows), e.g. unshare into a mount namespace of its own.
	Wrap []string
	cmd  *exec.Cmd
	log  *syncBuffer
	t    TB
}

// syncBuffer is the server's output, read while the server writes it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Start runs the server binary on a free loopback port with a fresh data
// directory and no agent (the control plane only); it is stopped (SIGTERM,
// then SIGKILL) at cleanup.
func Start(t TB, bin string, extra ...string) *Server {
	t.Helper()
	s := &Server{Bin: bin, Data: dataDir(t), Args: extra, t: t}
	s.Args = append([]string{"--agent", "none", "--http", fmt.Sprintf("127.0.0.1:%d", FreePort(t)), "--https", "", "--bus-listen", "127.0.0.1:0"}, s.Args...)
	s.Run()
	t.Cleanup(func() {
		s.logIfFailed()
		s.Stop()
		router.Halt(filepath.Join(s.Data, "router"))
	})
	return s
}

// dataDir is a fresh data directory whose path names it as the rig's, so
// that make clean-test finds what a crashed run left (HAProxy included).
func dataDir(t TB) string {
	dir, err := os.MkdirTemp("", "upscale-e2e-data-")
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "data")
}

// Agent is what a server's local agent makes on this machine: its own
// state directory, bridge and subnet, so that tests and a `make run`
// instance never meet.
type Agent struct {
	Bin    string
	State  string
	Bridge string
	Subnet string
	Wrap   []string // as Server.Wrap, for teardown
}

// StartWithAgent runs a server that runs apps: HAProxy on a free port, the
// embedded bus on a free port, and its local upscale-agent with a bridge
// and /24 of its own. Cleanup stops the server, destroys every container,
// removes the bridge and NAT rule, and stops HAProxy, even on failure.
func StartWithAgent(t TB, bin string, extra ...string) *Server {
	t.Helper()
	return StartWrapped(t, nil, bin, extra...)
}

// StartWrapped is StartWithAgent with the server, its agent and their
// teardown run under wrap (see Server.Wrap).
func StartWrapped(t TB, wrap []string, bin string, extra ...string) *Server {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	state, err := os.MkdirTemp("", "upscale-e2e-agent-")
	if err != nil {
		t.Fatalf("%v", err)
	}
	// The containers' root (a host uid from 100000) must traverse to its files.
	os.Chmod(state, 0o711)
	a := &Agent{
		Bin:    filepath.Join(filepath.Dir(bin), "upscale-agent"),
		State:  state,
		Bridge: "upse" + hex.EncodeToString(b),
		Subnet: fmt.Sprintf("10.%d.%d.0/24", 200+int(b[0])%50, b[1]),
		Wrap:   wrap,
	}
	// What teardown needs, for make clean-test after a crashed run.
	os.WriteFile(filepath.Join(state, "teardown.args"), []byte(strings.Join(a.teardownArgs(), " ")+"\n"), 0o600)
	s := &Server{Bin: bin, Data: dataDir(t), t: t, Agent: a, Wrap: wrap}
	s.HTTPPort = FreePort(t)
	s.Args = append([]string{
		"--http", fmt.Sprintf("127.0.0.1:%d", s.HTTPPort),
		// Plain HTTP unless a test asks for HTTPS (WithHTTPS).
		"--https", "",
		"--bus-listen", "127.0.0.1:0",
		"--agent", a.Bin,
		"--agent-args", fmt.Sprintf("--state %s --bridge %s --subnet %s", a.State, a.Bridge, a.Subnet),
	}, extra...)
	t.Cleanup(func() {
		s.logIfFailed()
		s.Stop()
		a.Teardown()
		router.Halt(filepath.Join(s.Data, "router"))
		os.RemoveAll(a.State)
	})
	s.Run()
	s.WaitHostUp()
	return s
}

// WaitHostUp waits until the server has seen its agent's host up.
func (s *Server) WaitHostUp() {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(s.Log(), `msg="host up"`) {
		if time.Now().After(deadline) {
			s.t.Fatalf("the local agent did not come up within 20 s:\n%s", s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Teardown destroys the agent's containers, bridge and NAT rule.
func (a *Agent) Teardown() error {
	argv := append(append(slices.Clone(a.Wrap), a.Bin), a.teardownArgs()...)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("agent teardown: %v: %s", err, out)
	}
	return nil
}

func (a *Agent) teardownArgs() []string {
	return []string{"--teardown", "--state", a.State, "--bridge", a.Bridge, "--subnet", a.Subnet}
}

// Get fetches path of app NS/APP through the router; it returns the
// status and body.
func (s *Server) Get(app, path string) (int, string, error) {
	ns, name, _ := strings.Cut(app, "/")
	req, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", s.HTTPPort, path), nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = name + "." + ns + ".upscale.localhost"
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// Run (re)starts the server on its data directory and port.
func (s *Server) Run() {
	s.t.Helper()
	if s.Port == 0 {
		s.Port = FreePort(s.t)
	}
	s.log = &syncBuffer{}
	args := append([]string{"server", "--config", filepath.Join(filepath.Dir(s.Data), "none.yaml"),
		"--data", s.Data, "--listen", fmt.Sprintf("127.0.0.1:%d", s.Port)}, s.Args...)
	os.WriteFile(filepath.Join(filepath.Dir(s.Data), "none.yaml"), nil, 0o600)
	argv := append(append(slices.Clone(s.Wrap), s.Bin), args...)
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port))
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.Stop()
			s.t.Fatalf("server did not listen within 10 s:\n%s", s.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop sends SIGTERM and waits; it returns the server's exit error.
func (s *Server) Stop() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	killed, err := terminate(s.cmd, 40*time.Second)
	if killed {
		err = errors.Join(err, errors.New("server did not stop on SIGTERM"))
	}
	s.cmd = nil
	return err
}

// Kill ends the server with SIGKILL, as a crash would: it cleans up
// nothing, and what it started (its local agent, HAProxy) stays.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	// What it started holds its output pipe open: wait for the process,
	// not for them.
	s.cmd.WaitDelay = time.Second
	s.cmd.Wait()
	s.cmd = nil
}

// terminate sends cmd SIGTERM and waits for it, for at most grace before
// it sends SIGKILL; it returns whether it was killed and cmd's exit error.
func terminate(cmd *exec.Cmd, grace time.Duration) (killed bool, err error) {
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
		return false, err
	case <-time.After(grace):
		cmd.Process.Kill()
		return true, <-done
	}
}

// logIfFailed prints the end of the server's log when the test failed:
// what the server saw is most of what explains a failed end-to-end run.
func (s *Server) logIfFailed() {
	t, ok := s.t.(interface {
		Failed() bool
		Logf(format string, args ...any)
	})
	if !ok || !t.Failed() || s.log == nil {
		return
	}
	lines := strings.Split(strings.TrimRight(s.log.String(), "\n"), "\n")
	t.Logf("server log, last %d of %d lines:\n%s", min(len(lines), 150), len(lines), strings.Join(lines[max(len(lines)-150, 0):], "\n"))
}

// Log is what the server has printed.
func (s *Server) Log() string { return s.log.String() }

// Local runs the local admin CLI against the server's data directory.
func (s *Server) Local(args ...string) (string, string, int) {
	argv := s.LocalCommand(args...)
	return Exec(exec.Command(argv[0], argv[1:]...), "")
}

// LocalCommand is the command line of the local admin CLI with args,
// acting on the server's data directory.
func (s *Server) LocalCommand(args ...string) []string {
	return slices.Concat([]string{s.Bin}, args, []string{"--data", s.Data, "--config", filepath.Join(filepath.Dir(s.Data), "none.yaml")})
}

// Key is an SSH key pair made by ssh-keygen.
type Key struct {
	Path   string // private key
	Public string // authorized_keys line
}

// NewKey makes an ed25519 key pair named name.
func NewKey(t TB, name string) Key {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name+"@e2e", "-f", p).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	pub, err := os.ReadFile(p + ".pub")
	if err != nil {
		t.Fatalf("reading key: %v", err)
	}
	return Key{Path: p, Public: strings.TrimSpace(string(pub))}
}

// SSHCommand is the ssh command line that reaches the server with key.
func (s *Server) SSHCommand(key Key, opts ...string) []string {
	args := []string{"ssh", "-p", fmt.Sprint(s.Port), "-i", key.Path,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"}
	return append(args, opts...)
}

// SSH runs `ssh upscale@127.0.0.1 args...` with key.
func (s *Server) SSH(key Key, stdin string, args ...string) (stdout, stderr string, code int) {
	full := append(s.SSHCommand(key), "upscale@127.0.0.1")
	full = append(full, args...)
	return Exec(exec.Command(full[0], full[1:]...), stdin)
}

// Remote is the git remote URL of app NS/APP.
func (s *Server) Remote(app string) string {
	return fmt.Sprintf("ssh://upscale@127.0.0.1:%d/%s.git", s.Port, app)
}

// Git runs git in dir with key as its ssh identity.
func (s *Server) Git(key Key, dir string, args ...string) (stdout, stderr string, code int) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(GitEnv(dir), "GIT_SSH_COMMAND="+strings.Join(s.SSHCommand(key), " "))
	return Exec(cmd, "")
}

// Exec runs cmd with stdin and returns its output and exit status (-1 when
// it could not run).
func Exec(cmd *exec.Cmd, stdin string) (string, string, int) {
	var out, errb bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errb.String(), 0
	case errors.As(err, &exit):
		return out.String(), errb.String(), exit.ExitCode()
	}
	return out.String(), errb.String() + err.Error(), -1
}

// FreePort returns a loopback TCP port nobody listens on right now.
func FreePort(t TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Repo is a work tree with files committed, ready to push.
func Repo(t TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	run := func(args ...string) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = GitEnv(dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	run("init", "-q", "-b", "master")
	Commit(t, dir, "initial commit", files)
	return dir
}

// Commit writes files into the work tree dir and commits them.
func Commit(t TB, dir, message string, files map[string]string) string {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatalf("%v", err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatalf("%v", err)
		}
	}
	env := GitEnv(dir)
	for _, args := range [][]string{{"add", "-A"}, {"commit", "-q", "--allow-empty", "-m", message}} {
		cmd := exec.Command("git", args...)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	cmd := exec.Command("git", "rev-parse", "HEAD")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("rev-parse: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// GitEnv is the environment for git in work tree dir: a fixed author and
// no user or system configuration.
func GitEnv(dir string) []string {
	return append(os.Environ(), "GIT_AUTHOR_NAME=E2E Author", "GIT_AUTHOR_EMAIL=e2e@example.com",
		"GIT_COMMITTER_NAME=E2E Author", "GIT_COMMITTER_EMAIL=e2e@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
}
