package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/deploy"
	"github.com/upscalehq/upscale/hostagent/images"
	"github.com/upscalehq/upscale/hostagent/lxc"
	"github.com/upscalehq/upscale/runtimes"
	"github.com/upscalehq/upscale/shellquote"
)

// lxcEnv is the bench's own container runtime for the start and density
// benchmarks: hostagent/lxc used directly, the way upscale-agent uses it
// (same image, command, environment and limits), with an lxcpath, bridge
// and subnet of its own. Its baseline is the same app as a plain host
// process, started the same way minus the container.
type lxcEnv struct {
	t      *tb
	cfg    lxc.Config
	rt     *lxc.Runtime
	image  string // the python runtime's shifted image: the containers' lower dir
	start  string // the python runtime's start command
	port   string // the environment variable that carries the port
	appDir string // the example app, copied to each container's /app

	// mu is held across each Create+Start and host process start, so that
	// the cleanup (maybe from Ctrl-C) never races one: it waits for the
	// operation, then closed makes the next one fail.
	mu     sync.Mutex
	closed bool
	procs  map[*exec.Cmd]bool
}

// lxc returns the bench's LXC runtime, setting it up on first use.
func (e *env) lxc() *lxcEnv {
	if e.lx == nil {
		e.lx = newLXCEnv(e.t)
	}
	return e.lx
}

// examplePython is the path of examples/python in this source tree.
func examplePython() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "examples", "python")
}

func newLXCEnv(t *tb) *lxcEnv {
	if os.Geteuid() != 0 {
		t.Fatalf("the container benchmarks need root (LXC, bridges)")
	}
	progress("lxc: looking up the python runtime image (built once, cached in %s)", images.DefaultCacheDir)
	catalog, err := runtimes.Load("")
	if err != nil {
		t.Fatalf("runtimes: %v", err)
	}
	py, ok := catalog.Get("python")
	if !ok {
		t.Fatalf("no python runtime in the catalog")
	}
	l := &lxcEnv{t: t, start: py.Start, port: py.PortEnv, procs: map[*exec.Cmd]bool{}}
	if l.port == "" {
		l.port = "PORT"
	}
	l.appDir = t.TempDir()
	src, err := os.ReadFile(filepath.Join(examplePython(), "app.py"))
	if err != nil {
		t.Fatalf("example app: %v", err)
	}
	if err := os.WriteFile(filepath.Join(l.appDir, "app.py"), src, 0o644); err != nil {
		t.Fatalf("%v", err)
	}

	// The containers' root (a host uid from 100000) must traverse to the lxcpath:
	// the bench's directory becomes 0711 (its t* subdirectories stay 0700)
	// and agent-* is where make clean-test looks for teardown.args.
	if err := os.Chmod(t.root, 0o711); err != nil {
		t.Fatalf("%v", err)
	}
	state, err := os.MkdirTemp(t.root, "agent-")
	if err != nil {
		t.Fatalf("%v", err)
	}
	if err := os.Chmod(state, 0o711); err != nil {
		t.Fatalf("%v", err)
	}
	b := make([]byte, 3)
	rand.Read(b)
	l.cfg = lxc.Config{
		LXCPath: filepath.Join(state, "containers"),
		Bridge:  "upsb" + hex.EncodeToString(b),
		Subnet:  freeSubnet(t),
		NAT:     false, // the apps need no internet
	}
	// What upscale-agent --teardown needs, for make clean-test after a
	// crashed run.
	args := fmt.Sprintf("--teardown --state %s --bridge %s --subnet %s --nat=false\n", state, l.cfg.Bridge, l.cfg.Subnet)
	if err := os.WriteFile(filepath.Join(state, "teardown.args"), []byte(args), 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	// Registered before New, which creates the bridge.
	t.Cleanup(l.cleanup)
	progress("lxc: runtime in %s, bridge %s, subnet %s", l.cfg.LXCPath, l.cfg.Bridge, l.cfg.Subnet)
	rt, err := lxc.New(l.cfg)
	if err != nil {
		t.Fatalf("%v", err)
	}
	l.mu.Lock()
	l.rt = rt
	l.mu.Unlock()
	// Shifted to the ids the runtime reserved, as the agent does.
	img, err := (&images.Builder{Shift: rt.IDMapBase()}).Ensure(context.Background(), py, func(l string) { progress("lxc: image: %s", l) })
	if err != nil {
		t.Fatalf("python image: %v", err)
	}
	l.image = img.Shifted
	return l
}

// freeSubnet picks a 10.250.X.0/24 that no interface of this machine is
// in (another bench, an agent).
func freeSubnet(t *tb) netip.Prefix {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatalf("%v", err)
	}
	for range 100 {
		b := make([]byte, 1)
		rand.Read(b)
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 250, b[0], 0}), 24)
		used := false
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP.To4()); ok && p.Contains(ip) {
					used = true
				}
			}
		}
		if !used {
			return p
		}
	}
	t.Fatalf("no free 10.250.X.0/24 subnet")
	return netip.Prefix{}
}

// cleanup destroys every container, stops every host process and removes
// the bridge, whether the run ended, failed or was interrupted.
func (l *lxcEnv) cleanup() {
	// Wait for a Create+Start in progress, but not forever: a hung one must
	// not keep the rest from being cleaned.
	locked := false
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if locked = l.mu.TryLock(); locked {
			break
		}
		if time.Now().After(deadline) {
			progress("lxc: cleanup: an operation is still running after 20 s; cleaning up anyway")
			break
		}
	}
	l.closed = true
	rt, procs := l.rt, l.procs
	l.procs = map[*exec.Cmd]bool{}
	if locked {
		l.mu.Unlock()
	}
	for cmd := range procs {
		stopHost(cmd)
	}
	if rt != nil {
		if all, err := rt.List(); err == nil {
			for _, c := range all {
				if err := rt.Destroy(context.Background(), c.Name); err != nil {
					progress("lxc: cleanup: %v", err)
				}
			}
		}
		rt.Close()
	}
	// Anything the runtime did not know about (a Create cut short).
	if entries, err := os.ReadDir(l.cfg.LXCPath); err == nil {
		for _, en := range entries {
			if en.IsDir() {
				exec.Command("lxc-stop", "-k", "-P", l.cfg.LXCPath, "-n", en.Name()).Run()
			}
		}
	}
	if rt != nil {
		if err := rt.RemoveNetwork(); err != nil {
			progress("lxc: cleanup: %v", err)
		}
	} else if _, err := net.InterfaceByName(l.cfg.Bridge); err == nil {
		exec.Command("ip", "link", "del", l.cfg.Bridge).Run()
	}
	// liblxc's lock files for this lxcpath, from the bench's directory on.
	os.RemoveAll(filepath.Join("/run/lxc/lock", l.t.root))
	os.RemoveAll(filepath.Dir(l.cfg.LXCPath))
}

// spec is a container of the example app as upscale-agent would create it
// for a release with the default memory limit.
func (l *lxcEnv) spec(name, message string) lxc.Spec {
	return lxc.Spec{
		Name: name, Image: l.image, AppDir: l.appDir, Command: l.start,
		Env:    map[string]string{l.port: strconv.Itoa(agentapi.Port), "MESSAGE": message},
		Memory: deploy.DefaultMemory,
		// upscale-agent's own value (cmd/upscale-agent).
		PidsMax: 512,
	}
}

// ctrTimes is where one container start's time went.
type ctrTimes struct {
	create, start time.Duration
	ip            netip.Addr
}

// run creates and starts a container of the example app; it does not wait
// for the app.
func (l *lxcEnv) run(name, message string) ctrTimes {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		l.t.Fatalf("interrupted")
	}
	t0 := time.Now()
	c, err := l.rt.Create(context.Background(), l.spec(name, message))
	if err != nil {
		l.t.Fatalf("%v", err)
	}
	t1 := time.Now()
	if err := l.rt.Start(context.Background(), name); err != nil {
		l.t.Fatalf("%v", err)
	}
	return ctrTimes{create: t1.Sub(t0), start: time.Since(t1), ip: c.IP}
}

// destroy removes a container and returns how long it took.
func (l *lxcEnv) destroy(name string) time.Duration {
	t0 := time.Now()
	if err := l.rt.Destroy(context.Background(), name); err != nil {
		l.t.Fatalf("%v", err)
	}
	return time.Since(t0)
}

// waitPort polls addr with TCP connects until one succeeds; alive says
// whether the app may still come up (false: it exited). It fails after
// limit with what why returns.
func waitPort(t *tb, addr string, limit time.Duration, alive func() bool, why func() string) {
	deadline := time.Now().Add(limit)
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 250*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) || (i%50 == 49 && !alive()) {
			t.Fatalf("%s did not answer within %v: %v%s", addr, limit, err, why())
		}
		time.Sleep(time.Millisecond)
	}
}

// waitHTTP polls http://addr/ until it answers 200.
func waitHTTP(t *tb, addr string, limit time.Duration, why func() string) {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(limit)
	for {
		resp, err := client.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("http://%s/ did not answer within %v: %v%s", addr, limit, err, why())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitCtr waits until container name's app accepts connections.
func (l *lxcEnv) waitCtr(name string, ip netip.Addr) {
	waitPort(l.t, netip.AddrPortFrom(ip, agentapi.Port).String(), 20*time.Second,
		func() bool { c, err := l.rt.Get(name); return err == nil && c.State == "running" },
		func() string { return l.logs(name) })
}

func (l *lxcEnv) logs(name string) string {
	c, _ := l.rt.Get(name)
	lines, _ := l.rt.Logs(name, 20)
	return fmt.Sprintf(" (container %s, exit %d); its output:\n%s", c.State, c.ExitCode, strings.Join(lines, "\n"))
}

// hostEnv is the environment the launcher gives the app in a container
// (hostagent/lxc appEnv), so that the host baseline runs the same Python
// the same way.
func (l *lxcEnv) hostEnv(port int, message string) []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "LANG=C.UTF-8", "PYTHONUNBUFFERED=1",
		l.port + "=" + strconv.Itoa(port), "MESSAGE=" + message,
	}
}

// startHost runs the example app as a plain host process with the
// runtime's start command, in its own process group; with procs set, its
// shell first moves itself into that cgroup (cgroup.procs file), so that
// everything the app charges is counted there.
func (l *lxcEnv) startHost(port int, message, procs string) *exec.Cmd {
	script := l.start
	if procs != "" {
		script = "echo $$ >" + shellquote.Quote(procs) + " || exit 1; " + script
	}
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir, cmd.Env = l.appDir, l.hostEnv(port, message)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		l.t.Fatalf("interrupted")
	}
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("starting the host app: %v", err)
	}
	l.procs[cmd] = true
	return cmd
}

// stopHost kills a host app's process group and reaps it.
func (l *lxcEnv) stopHost(cmd *exec.Cmd) {
	l.mu.Lock()
	delete(l.procs, cmd)
	l.mu.Unlock()
	stopHost(cmd)
}

func stopHost(cmd *exec.Cmd) {
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
}

// exited reports whether a host app has exited (it is a zombie or gone).
func exited(cmd *exec.Cmd) bool {
	f, err := os.Open(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		return true
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	if i := strings.LastIndexByte(line, ')'); i >= 0 && len(line) > i+2 {
		return line[i+2] == 'Z'
	}
	return false
}
