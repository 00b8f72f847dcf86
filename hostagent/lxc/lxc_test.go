package lxc

import (
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/upscalehq/upscale/hostagent/subids"
)

// These tests run real unprivileged LXC containers from a tiny busybox
// image. They need root and the lxc package; without them they skip,
// unless UPSCALE_E2E=1 says this run must exercise them.
//
// Everything they create is prefixed "upst": bridges upstXXXXXX, nftables
// tables upscale_upstXXXXXX, directories /tmp/upst-*. A crashed run's
// leftovers can be found by those names.

var (
	testBase     string // /tmp/upst-*: image and per-test lxcpaths
	testImage    string
	testImageErr error
	testIDBase   uint32 // root's id range on this machine, as an agent would reserve it
	imageOnce    sync.Once
)

func TestMain(m *testing.M) {
	if os.Getenv("UPSCALE_LXC_TEST_AGENT") != "" {
		fakeAgent()
		return
	}
	code := m.Run()
	if testBase != "" {
		os.RemoveAll(testBase)
		os.RemoveAll(filepath.Join("/run/lxc/lock", testBase))
	}
	os.Exit(code)
}

// fakeAgent is the test binary re-run as an agent that creates and starts
// a container and then dies of SIGKILL, without any cleanup.
func fakeAgent() {
	var job struct {
		Config Config
		Spec   Spec
	}
	if err := json.Unmarshal([]byte(os.Getenv("UPSCALE_LXC_TEST_AGENT")), &job); err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	rt, err := New(job.Config)
	if err == nil {
		_, err = rt.Create(context.Background(), job.Spec)
	}
	if err == nil {
		err = rt.Start(context.Background(), job.Spec.Name)
	}
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	fmt.Println("started")
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

func requireLXC(t *testing.T) {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("UPSCALE_E2E") == "1" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("LXC tests need root")
	}
	for _, bin := range []string{"lxc-start", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			skip("LXC tests need %s: %v", bin, err)
		}
	}
	imageOnce.Do(func() { testImage, testImageErr = buildTestImage() })
	if testImageErr != nil {
		skip("test image: %v", testImageErr)
	}
}

// staticBusybox returns a statically linked busybox, installing
// busybox-static when the host has none (a dynamic one cannot run in the
// image, which has no libc).
func staticBusybox() (string, error) {
	isStatic := func(path string) bool {
		f, err := elf.Open(path)
		if err != nil {
			return false
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				return false
			}
		}
		return true
	}
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if isStatic(p) {
			return p, nil
		}
	}
	if out, err := exec.Command("apt-get", "install", "-y", "-qq", "busybox-static").CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get install busybox-static: %v: %s", err, out)
	}
	if isStatic("/bin/busybox") {
		return "/bin/busybox", nil
	}
	return "", errors.New("no static busybox")
}

// buildTestImage makes a rootfs of one static busybox with its applets,
// shifted to the containers' ids like hostagent/images does for real
// images.
func buildTestImage() (string, error) {
	bb, err := staticBusybox()
	if err != nil {
		return "", err
	}
	if testIDBase, err = subids.System.Reserve(context.Background(), 0, 65536); err != nil {
		return "", err
	}
	if testBase == "" {
		if testBase, err = os.MkdirTemp("", "upst-"); err != nil {
			return "", err
		}
		// The containers' root must traverse to its image and upper dirs.
		if err := os.Chmod(testBase, 0o711); err != nil {
			return "", err
		}
	}
	return buildImage(bb, filepath.Join(testBase, "image"), testIDBase)
}

// buildImage makes the busybox rootfs at img with every owner shifted to
// base.
func buildImage(bb, img string, base uint32) (string, error) {
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "app", "root", "tmp", "dev", "proc", "sys", "run", "var/tmp"} {
		if err := os.MkdirAll(filepath.Join(img, d), 0o755); err != nil {
			return "", err
		}
	}
	if err := os.Chmod(filepath.Join(img, "tmp"), 0o1777); err != nil {
		return "", err
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(img, "bin", "busybox"), data, 0o755); err != nil {
		return "", err
	}
	list, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return "", err
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(img, "bin", applet)); err != nil {
			return "", err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(img, name), []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	// Shift every owner by the base, as for real images.
	err = filepath.WalkDir(img, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(base), int(base))
	})
	return img, err
}

type testEnv struct {
	t   *testing.T
	cfg Config
	rt  *Runtime
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freeSubnet picks a 10.201.X.0/24 no interface on the host uses.
func freeSubnet(t *testing.T, bits int) netip.Prefix {
	t.Helper()
	addrs, _ := net.InterfaceAddrs()
	for range 100 {
		b := make([]byte, 1)
		_, _ = rand.Read(b)
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 201, b[0], 0}), bits)
		used := false
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(ipn.IP); ok && p.Contains(ip.Unmap()) {
					used = true
				}
			}
		}
		if !used {
			return p
		}
	}
	t.Fatal("no free 10.201.X.0 subnet")
	return netip.Prefix{}
}

// newEnv makes a Runtime on a fresh lxcpath, bridge and subnet, and tears
// all of it down when the test ends, whatever happened.
func newEnv(t *testing.T, mod func(*Config)) *testEnv {
	t.Helper()
	requireLXC(t)
	lxcpath := filepath.Join(testBase, "lxc-"+randHex(4))
	cfg := Config{
		LXCPath:   lxcpath,
		Bridge:    "upst" + randHex(3),
		Subnet:    freeSubnet(t, 24),
		NAT:       true,
		IDMapBase: testIDBase,
	}
	if mod != nil {
		mod(&cfg)
	}
	e := &testEnv{t: t, cfg: cfg}
	t.Cleanup(func() { e.teardown() })
	rt, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.rt = rt
	return e
}

// teardown destroys through a Runtime when it can, then sweeps with the
// raw tools so a broken Runtime leaves nothing behind either.
func (e *testEnv) teardown() {
	t := e.t
	rt := e.rt
	if rt != nil {
		rt.mu.Lock()
		closed := rt.closed
		rt.mu.Unlock()
		if closed {
			rt, _ = New(e.cfg)
		}
	}
	if rt != nil {
		list, _ := rt.List()
		for _, c := range list {
			if err := rt.Destroy(context.Background(), c.Name); err != nil {
				t.Errorf("cleanup: destroy %s: %v", c.Name, err)
			}
		}
		rt.Close()
	}
	entries, _ := os.ReadDir(e.cfg.LXCPath)
	for _, d := range entries {
		if d.IsDir() {
			_ = exec.Command("lxc-stop", "-k", "-n", d.Name(), "-P", e.cfg.LXCPath).Run()
		}
	}
	if rt != nil {
		if err := rt.RemoveNetwork(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	_ = exec.Command("ip", "link", "del", e.cfg.Bridge).Run()
	_ = exec.Command("nft", "delete", "table", "ip", natTable(e.cfg.Bridge)).Run()
	os.RemoveAll(e.cfg.LXCPath)
	os.RemoveAll(filepath.Join("/run/lxc/lock", e.cfg.LXCPath))
}

func (e *testEnv) appDir(files map[string]string) string {
	dir := e.t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
	return dir
}

func (e *testEnv) spec(name, command string) Spec {
	return Spec{Name: name, Image: testImage, Command: command, Env: map[string]string{"PORT": "8080"}}
}

func (e *testEnv) create(s Spec) Container {
	e.t.Helper()
	c, err := e.rt.Create(context.Background(), s)
	if err != nil {
		e.t.Fatalf("Create %s: %v", s.Name, err)
	}
	return c
}

func (e *testEnv) start(name string) {
	e.t.Helper()
	if err := e.rt.Start(context.Background(), name); err != nil {
		e.t.Fatalf("Start %s: %v", name, err)
	}
}

func (e *testEnv) get(name string) Container {
	e.t.Helper()
	c, err := e.rt.Get(name)
	if err != nil {
		e.t.Fatalf("Get %s: %v", name, err)
	}
	return c
}

func (e *testEnv) upper(name, rel string) string {
	return filepath.Join(e.cfg.LXCPath, name, "upper", rel)
}

// httpGet retries until the app answers or timeout passes.
func httpGet(t *testing.T, url string, timeout time.Duration) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	client := &http.Client{Timeout: time.Second}
	var lastErr error
	for time.Since(start) < timeout {
		resp, err := client.Get(url)
		if err == nil {
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				return string(body), time.Since(start)
			}
			lastErr = fmt.Errorf("status %s, err %v", resp.Status, err)
		} else {
			lastErr = err
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("GET %s: %v", url, lastErr)
	return "", 0
}

// eventually polls cond for up to timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *testEnv) logsContain(name, want string) bool {
	lines, err := e.rt.Logs(name, 0)
	if err != nil {
		e.t.Fatalf("Logs %s: %v", name, err)
	}
	for _, l := range lines {
		if strings.Contains(l, want) {
			return true
		}
	}
	return false
}

// procUIDs returns the real, effective, saved and fs uids of pid.
func procUIDs(t *testing.T, pid int) []int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			var ids []int
			for _, f := range strings.Fields(rest) {
				n, err := strconv.Atoi(f)
				if err != nil {
					t.Fatalf("Uid line %q", line)
				}
				ids = append(ids, n)
			}
			return ids
		}
	}
	t.Fatalf("no Uid line for %d", pid)
	return nil
}

func children(pid int) []int {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var out []int
	for _, f := range strings.Fields(string(data)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

const httpdCmd = `echo "greeting=$GREETING"; echo "$GREETING" > /app/env.txt; exec httpd -f -p "$PORT" -h /app`

func TestServeUnprivilegedWithEnvAndLogs(t *testing.T) {
	e := newEnv(t, nil)
	s := e.spec("web", httpdCmd)
	s.AppDir = e.appDir(map[string]string{"index.html": "hello from upscale\n"})
	s.Env["GREETING"] = "hi 'there' $x"

	t0 := time.Now()
	c := e.create(s)
	created := time.Since(t0)
	t1 := time.Now()
	e.start("web")
	started := time.Since(t1)
	body, answered := httpGet(t, fmt.Sprintf("http://%s:8080/index.html", c.IP), 10*time.Second)
	t.Logf("timings: create %v, start %v, start→HTTP answer %v, total %v", created, started, answered, time.Since(t0))
	if body != "hello from upscale\n" {
		t.Errorf("body = %q", body)
	}
	if !e.cfg.Subnet.Contains(c.IP) || c.IP == e.cfg.Subnet.Addr().Next() {
		t.Errorf("ip %v not a host address of %v", c.IP, e.cfg.Subnet)
	}

	got := e.get("web")
	if got.State != "running" || got.PID <= 0 || got.StartedAt.IsZero() || got.IP != c.IP {
		t.Fatalf("Get = %+v", got)
	}
	// The init (launcher) and the app are mapped ids on the host.
	pids := append([]int{got.PID}, children(got.PID)...)
	if len(pids) < 2 {
		t.Errorf("init %d has no app child", got.PID)
	}
	for _, pid := range pids {
		for _, uid := range procUIDs(t, pid) {
			if uid < int(testIDBase) {
				t.Errorf("pid %d runs as host uid %d", pid, uid)
			}
		}
	}

	env, _ := httpGet(t, fmt.Sprintf("http://%s:8080/env.txt", c.IP), 5*time.Second)
	if env != "hi 'there' $x\n" {
		t.Errorf("env.txt = %q", env)
	}
	eventually(t, 5*time.Second, "greeting in logs", func() bool { return e.logsContain("web", "greeting=hi 'there' $x") })

	// /etc/hosts and resolv.conf as the DNS trap requires.
	hosts, _ := os.ReadFile(e.upper("web", "etc/hosts"))
	if !strings.Contains(string(hosts), "127.0.1.1\tweb") {
		t.Errorf("hosts = %q", hosts)
	}
	for _, rel := range []string{"", "app", "app/index.html", ".upscale/init"} {
		st, err := os.Lstat(e.upper("web", rel))
		if err != nil {
			t.Fatal(err)
		}
		if sys := st.Sys().(*syscall.Stat_t); sys.Uid != testIDBase || sys.Gid != testIDBase {
			t.Errorf("upper/%s owned by %d:%d, want the container's root", rel, sys.Uid, sys.Gid)
		}
	}

	// httpd has no TERM handler: it dies of the forwarded signal at once.
	t2 := time.Now()
	if err := e.rt.Stop(context.Background(), "web", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t2); d > 5*time.Second {
		t.Errorf("Stop took %v: TERM did not reach the app", d)
	}
	got = e.get("web")
	if got.State != "stopped" || got.PID != 0 || got.ExitCode != 143 {
		t.Errorf("after Stop: %+v, want stopped with exit 143", got)
	}

	// Restart: same address, logs appended.
	e.start("web")
	httpGet(t, fmt.Sprintf("http://%s:8080/index.html", c.IP), 10*time.Second)
	if got := e.get("web"); got.IP != c.IP || got.ExitCode != -1 {
		t.Errorf("after restart: %+v", got)
	}
}

func TestStopSignals(t *testing.T) {
	e := newEnv(t, nil)
	e.create(e.spec("graceful", `trap 'echo got-term > /app/marker; exit 0' TERM; echo ready; while :; do sleep 0.1; done`))
	e.create(e.spec("stubborn", `trap '' TERM; echo ready; while :; do sleep 0.1; done`))
	for _, n := range []string{"graceful", "stubborn"} {
		e.start(n)
		eventually(t, 5*time.Second, n+" ready", func() bool { return e.logsContain(n, "ready") })
	}

	start := time.Now()
	if err := e.rt.Stop(context.Background(), "graceful", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("graceful stop took %v", d)
	}
	if b, err := os.ReadFile(e.upper("graceful", "app/marker")); err != nil || string(b) != "got-term\n" {
		t.Errorf("marker = %q, %v: the app did not get SIGTERM", b, err)
	}
	if c := e.get("graceful"); c.State != "stopped" || c.ExitCode != 0 {
		t.Errorf("graceful: %+v, want stopped, exit 0", c)
	}

	start = time.Now()
	if err := e.rt.Stop(context.Background(), "stubborn", time.Second); err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	if d < time.Second || d > 10*time.Second {
		t.Errorf("stubborn stop took %v, want the 1s grace then SIGKILL", d)
	}
	if c := e.get("stubborn"); c.State != "stopped" || c.ExitCode != 137 {
		t.Errorf("stubborn: %+v, want stopped, exit 137", c)
	}
	t.Logf("graceful stop and SIGKILL after 1s grace: %v", d)
}

func TestExitCodeAndWait(t *testing.T) {
	e := newEnv(t, nil)
	e.create(e.spec("build", `echo building; sleep 0.2; echo done; exit 3`))
	e.start("build")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code, err := e.rt.Wait(ctx, "build")
	if err != nil || code != 3 {
		t.Fatalf("Wait = %d, %v; want 3", code, err)
	}
	if c := e.get("build"); c.State != "stopped" || c.ExitCode != 3 {
		t.Errorf("Get = %+v", c)
	}
	lines, err := e.rt.Logs("build", 10)
	if err != nil || strings.Join(lines, "|") != "building|done" {
		t.Errorf("Logs = %q, %v", lines, err)
	}

	// Follow from the start returns every line, then nil once stopped.
	var got []string
	if err := e.rt.Follow(ctx, "build", 0, func(l string) { got = append(got, l) }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "|") != "building|done" {
		t.Errorf("Follow = %q", got)
	}

	// Run it again right away: the output is appended, the status is the
	// new run's.
	e.start("build")
	if code, err := e.rt.Wait(ctx, "build"); err != nil || code != 3 {
		t.Fatalf("second Wait = %d, %v", code, err)
	}
	if lines, _ := e.rt.Logs("build", 0); strings.Join(lines, "|") != "building|done|building|done" {
		t.Errorf("Logs after two runs = %q", lines)
	}
}

func TestFollowRunning(t *testing.T) {
	e := newEnv(t, nil)
	e.create(e.spec("ticker", `echo first; sleep 0.3; i=0; while [ $i -lt 5 ]; do echo "tick $i"; i=$((i+1)); sleep 0.1; done`))
	e.start("ticker")
	eventually(t, 5*time.Second, "first line", func() bool { return e.logsContain("ticker", "first") })
	lines, off, err := e.rt.LogTail("ticker", 10)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []string
	if err := e.rt.Follow(ctx, "ticker", off, func(l string) { got = append(got, l) }); err != nil {
		t.Fatal(err)
	}
	all := strings.Join(append(lines, got...), "|")
	if all != "first|tick 0|tick 1|tick 2|tick 3|tick 4" {
		t.Errorf("LogTail+Follow = %q", all)
	}
}

func TestLogCap(t *testing.T) {
	const limit = 64 << 10
	e := newEnv(t, func(c *Config) { c.LogLimit = limit })
	// 10 MB as fast as the app can write it, then a last line.
	e.create(e.spec("chatty", `yes 0123456789012345678901234567890123456789012345678 | head -c 10485760; echo; echo END; sleep 1000`))
	e.start("chatty")
	logPath := e.upper("chatty", ".upscale/app.log")
	eventually(t, 30*time.Second, "END in logs", func() bool {
		lines, err := e.rt.Logs("chatty", 1)
		return err == nil && len(lines) == 1 && lines[0] == "END"
	})
	eventually(t, 5*time.Second, "log capped", func() bool {
		st, err := os.Stat(logPath)
		return err == nil && st.Size() <= limit
	})
	lines, off, err := e.rt.LogTail("chatty", 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 3 || lines[2] != "END" || lines[0] != "0123456789012345678901234567890123456789012345678" {
		t.Errorf("tail = %q", lines)
	}
	// The logical offset counts what was dropped. Output appended in the
	// instant between the capper's last look and its truncate is lost, so
	// allow for a little less than everything written.
	if off < 10485760-512<<10 || off > 10485760+10 {
		t.Errorf("offset %d, want about 10 MB (bytes written since creation)", off)
	}
	st, _ := os.Stat(logPath)
	t.Logf("after a 10 MB burst: log file %d bytes (limit %d), logical offset %d", st.Size(), limit, off)
}

func TestMemoryLimit(t *testing.T) {
	e := newEnv(t, nil)
	s := e.spec("hog", `echo start; sleep 0.5; head -c 524288000 /dev/zero | tail > /dev/null; echo "rc=$?"; sleep 1000`)
	s.Memory = 32 << 20
	e.create(s)
	e.start("hog")
	c, _ := e.rt.get("hog")
	lx, err := c.lxc(e.cfg.LXCPath)
	if err != nil {
		t.Fatal(err)
	}
	key := "memory.limit_in_bytes"
	if e.rt.cgroup2 {
		key = "memory.max"
	}
	if got := lx.CgroupItem(key); len(got) != 1 || got[0] != strconv.Itoa(32<<20) {
		t.Errorf("%s = %q", key, got)
	}
	// The app, not the launcher, is the OOM killer's choice.
	readAdj := func(pid int) string {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid))
		return strings.TrimSpace(string(b))
	}
	initPID := e.get("hog").PID
	eventually(t, 5*time.Second, "app oom_score_adj", func() bool {
		kids := children(initPID)
		for _, pid := range kids {
			if readAdj(pid) != strconv.Itoa(appOOMScoreAdj) {
				return false
			}
		}
		return len(kids) > 0
	})
	if adj := readAdj(initPID); adj == strconv.Itoa(appOOMScoreAdj) {
		t.Errorf("launcher oom_score_adj = %q, like the app's", adj)
	}

	deadline := time.Now().Add(60 * time.Second)
	for !e.logsContain("hog", "rc=") && e.get("hog").State == "running" {
		if time.Now().After(deadline) {
			lines, _ := e.rt.Logs("hog", 10)
			t.Fatalf("hog not killed after 60s: state %+v, logs %q", e.get("hog"), lines)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Either the allocating process died and the app's shell reports it,
	// or the OOM killer took the app's shell too and the launcher, which
	// it spared, recorded the kill. The host (this test) carries on.
	got := e.get("hog")
	lines, _ := e.rt.Logs("hog", 5)
	switch got.State {
	case "running":
		if !e.logsContain("hog", "rc=137") {
			t.Errorf("want the allocating process SIGKILLed, logs: %q", lines)
		}
	case "stopped":
		if got.ExitCode != 137 {
			t.Errorf("container stopped with exit %d, want 137 recorded by the launcher; logs %q", got.ExitCode, lines)
		}
	default:
		t.Errorf("state %s", got.State)
	}
	t.Logf("after the OOM kill: state %s, logs %q", got.State, lines)
}

// A build step over its memory limit is killed by the kernel: the
// container stops with 137 and says the OOM killer did it, which a process
// that SIGKILLs itself does not. /dev/shm has the size asked for.
func TestOOMKilledAndShmSize(t *testing.T) {
	e := newEnv(t, nil)
	s := e.spec("oom", `df -k /dev/shm | tail -n 1; head -c 524288000 /dev/zero | tail > /dev/null`)
	s.Memory, s.ShmSize = 32<<20, 8<<20
	e.create(s)
	e.create(e.spec("self", `kill -9 $$`))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, name := range []string{"oom", "self"} {
		e.start(name)
		if code, err := e.rt.Wait(ctx, name); err != nil || code != 137 {
			lines, _ := e.rt.Logs(name, 5)
			t.Fatalf("%s: Wait = %d, %v; want 137; logs %q", name, code, err, lines)
		}
	}
	if c := e.get("oom"); !c.OOMKilled {
		t.Errorf("over its memory limit: %+v, want OOMKilled", c)
	}
	if c := e.get("self"); c.OOMKilled {
		t.Errorf("killed by itself: %+v, want not OOMKilled", c)
	}
	if lines, _ := e.rt.Logs("oom", 5); len(lines) == 0 || !strings.Contains(lines[0], " 8192 ") {
		t.Errorf("df /dev/shm: %q, want a size of 8192 KiB", lines)
	}
	// A new run starts with a clean record.
	c, _ := e.rt.get("oom")
	os.WriteFile(filepath.Join(c.dir, "upper", stateDirIn[1:], oomName), []byte("1\n"), 0o644)
	e.start("self")
	if _, err := e.rt.Wait(ctx, "self"); err != nil || e.get("self").OOMKilled {
		t.Errorf("second run of self: %+v, %v", e.get("self"), err)
	}
}

func TestPidsLimit(t *testing.T) {
	e := newEnv(t, nil)
	s := e.spec("forky", `(i=0; while [ $i -lt 40 ]; do sleep 1000 & i=$((i+1)); done); echo spawned; exec sleep 1000`)
	s.PidsMax = 16
	e.create(s)
	e.start("forky")
	eventually(t, 10*time.Second, "spawn loop done", func() bool { return e.logsContain("forky", "spawned") })
	if !e.logsContain("forky", "fork") {
		lines, _ := e.rt.Logs("forky", 5)
		t.Errorf("no fork failure in logs: %q", lines)
	}
	c, _ := e.rt.get("forky")
	lx, err := c.lxc(e.cfg.LXCPath)
	if err != nil {
		t.Fatal(err)
	}
	cur := lx.CgroupItem("pids.current")
	if len(cur) != 1 {
		t.Fatalf("pids.current = %q", cur)
	}
	if n, _ := strconv.Atoi(cur[0]); n > 16 || n < 10 {
		t.Errorf("pids.current = %d, want <= 16 (and the loop to have reached it)", n)
	}
}

// A CPU limit of half a core: a busy loop gets at most about half.
func TestCPULimit(t *testing.T) {
	e := newEnv(t, nil)
	s := e.spec("spin", `while :; do :; done`)
	s.CPU = 0.5
	e.create(s)
	e.start("spin")
	c, _ := e.rt.get("spin")
	lx, err := c.lxc(e.cfg.LXCPath)
	if err != nil {
		t.Fatal(err)
	}
	if e.rt.cgroup2 {
		if got := lx.CgroupItem("cpu.max"); len(got) != 1 || got[0] != "50000 100000" {
			t.Fatalf("cpu.max = %q", got)
		}
		return
	}
	if got := lx.CgroupItem("cpu.cfs_quota_us"); len(got) != 1 || got[0] != "50000" {
		t.Fatalf("cpu.cfs_quota_us = %q", got)
	}
	usage := func() int64 {
		v := lx.CgroupItem("cpuacct.usage")
		if len(v) != 1 {
			t.Fatalf("cpuacct.usage = %q", v)
		}
		n, _ := strconv.ParseInt(v[0], 10, 64)
		return n
	}
	before, start := usage(), time.Now()
	time.Sleep(time.Second)
	used := float64(usage()-before) / float64(time.Since(start).Nanoseconds())
	if used > 0.6 {
		t.Fatalf("the container used %.2f cores under a 0.5 limit", used)
	}
	t.Logf("busy loop under cpu 0.5 used %.2f cores", used)
}

func TestDestroyFreesAddress(t *testing.T) {
	// A /29 has 5 container addresses after the gateway.
	e := newEnv(t, func(c *Config) { c.Subnet = freeSubnet(t, 29) })
	var ips []netip.Addr
	for i := range 5 {
		ips = append(ips, e.create(e.spec(fmt.Sprintf("c%d", i), "sleep 1000")).IP)
	}
	if _, err := e.rt.Create(context.Background(), e.spec("c5", "sleep 1000")); !errors.Is(err, ErrNoAddress) {
		t.Fatalf("6th Create: %v, want ErrNoAddress", err)
	}
	e.start("c2")
	dir := filepath.Join(e.cfg.LXCPath, "c2")
	if err := e.rt.Destroy(context.Background(), "c2"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s still there: %v", dir, err)
	}
	if _, err := e.rt.Get("c2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Destroy: %v", err)
	}
	if err := e.rt.Destroy(context.Background(), "c2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Destroy: %v", err)
	}
	c := e.create(e.spec("c5", "sleep 1000"))
	if c.IP != ips[2] {
		t.Errorf("new container got %v, want the freed %v", c.IP, ips[2])
	}
	if _, err := e.rt.Create(context.Background(), e.spec("c5", "sleep 1000")); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate Create: %v", err)
	}
}

func TestReadoption(t *testing.T) {
	e := newEnv(t, nil)
	s := e.spec("keep", httpdCmd)
	s.AppDir = e.appDir(map[string]string{"index.html": "still here\n"})
	c1 := e.create(s)
	e.start("keep")
	httpGet(t, fmt.Sprintf("http://%s:8080/index.html", c1.IP), 10*time.Second)
	pid := e.get("keep").PID

	// The agent restarts: the old Runtime goes away, the container stays.
	if err := e.rt.Close(); err != nil {
		t.Fatal(err)
	}
	rt2, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.rt = rt2
	list, err := rt2.List()
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if got := list[0]; got.Name != "keep" || got.State != "running" || got.IP != c1.IP || got.PID != pid {
		t.Errorf("adopted = %+v, want running %v pid %d", got, c1.IP, pid)
	}
	c2 := e.create(e.spec("other", "sleep 1000"))
	if c2.IP == c1.IP {
		t.Errorf("new container reuses the adopted one's address %v", c1.IP)
	}
	httpGet(t, fmt.Sprintf("http://%s:8080/index.html", c1.IP), 5*time.Second)
	if !e.logsContain("keep", "greeting=") {
		t.Error("adopted container's logs not readable")
	}
	if _, err := New(e.cfg); err == nil {
		t.Error("a second Runtime on the same LXCPath was allowed")
	}
	if err := rt2.Stop(context.Background(), "keep", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// The agent process dies (SIGKILL, no Close): its container keeps serving
// and the next agent adopts it.
func TestAgentKilled(t *testing.T) {
	e := newEnv(t, nil)
	// The dying agent must own the lxcpath: give it up here first.
	e.rt.Close()
	s := e.spec("survivor", httpdCmd)
	s.AppDir = e.appDir(map[string]string{"index.html": "alive\n"})
	job, _ := json.Marshal(map[string]any{"Config": e.cfg, "Spec": s})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "UPSCALE_LXC_TEST_AGENT="+string(job))
	out, err := cmd.CombinedOutput()
	if !strings.Contains(string(out), "started") {
		t.Fatalf("agent: %v: %s", err, out)
	}
	rt, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.rt = rt
	c := e.get("survivor")
	if c.State != "running" || c.PID <= 0 {
		t.Fatalf("after the agent died: %+v", c)
	}
	if body, _ := httpGet(t, fmt.Sprintf("http://%s:8080/index.html", c.IP), 5*time.Second); body != "alive\n" {
		t.Errorf("body %q", body)
	}
	if err := rt.Stop(context.Background(), "survivor", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if c := e.get("survivor"); c.ExitCode != 143 {
		t.Errorf("exit code %d after Stop by the new agent", c.ExitCode)
	}
}

// probeTargets has a container try each target (host:port, fetched with
// wget) and publish what it found at /app/results, one "TARGET reached" or
// "TARGET blocked" line each, then "done"; it also publishes its effective
// capabilities. The host reads the results through the container's own
// port, the way the router reaches it.
const probeScript = `echo probe > /app/who; httpd -p "$PORT" -h /app
grep CapEff /proc/self/status > /app/caps
for t in $TARGETS; do
	if timeout 3 wget -q -O /tmp/got "http://$t/who" 2>>/app/errors; then echo "$t reached"; else echo "$t blocked"; fi >> /app/results
done
echo done >> /app/results
sleep 1000`

func (e *testEnv) probe(name string, targets ...string) map[string]string {
	e.t.Helper()
	s := e.spec(name, probeScript)
	s.Env["TARGETS"] = strings.Join(targets, " ")
	c := e.create(s)
	e.start(name)
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _ := httpGet(e.t, fmt.Sprintf("http://%s:8080/results", c.IP), 10*time.Second)
		if strings.HasSuffix(out, "done\n") {
			got := map[string]string{}
			for _, line := range strings.Split(strings.TrimSuffix(out, "done\n"), "\n") {
				if target, verdict, ok := strings.Cut(line, " "); ok {
					got[target] = verdict
				}
			}
			caps, _ := httpGet(e.t, fmt.Sprintf("http://%s:8080/caps", c.IP), 10*time.Second)
			got["caps"] = strings.TrimSpace(strings.TrimPrefix(caps, "CapEff:"))
			errs, _ := httpGet(e.t, fmt.Sprintf("http://%s:8080/errors", c.IP), 2*time.Second)
			e.t.Logf("%s: wget said: %s", name, errs)
			return got
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s did not finish probing: %q", name, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A container reaches neither another container (same bridge, or another
// bridge through this host), nor this host, nor private networks; the
// host (the router) still reaches every container. It had NET_ADMIN and
// NET_RAW, and reached everything.
func TestContainersAreIsolatedRegression(t *testing.T) {
	e := newEnv(t, nil)
	other := newEnv(t, nil) // another bridge and subnet: the forwarding path, as to another host
	a := e.create(e.spec("a", `echo a > /app/who; exec httpd -f -p "$PORT" -h /app`))
	e.start("a")
	b := other.create(other.spec("b", `echo b > /app/who; exec httpd -f -p "$PORT" -h /app`))
	other.start("b")
	// A service of the host's, on the containers' gateway.
	gw := e.cfg.Subnet.Addr().Next()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(gw, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "host\n") }))
	for _, c := range []Container{a, b} {
		if got, _ := httpGet(t, fmt.Sprintf("http://%s:8080/who", c.IP), 10*time.Second); got == "" {
			t.Fatalf("the host does not reach %s", c.Name)
		}
	}

	toA, toB, toHost := a.IP.String()+":8080", b.IP.String()+":8080", ln.Addr().String()
	got := e.probe("probe", toA, toB, toHost)
	for _, target := range []string{toA, toB, toHost} {
		if got[target] != "blocked" {
			t.Errorf("a container reached %s (%q)", target, got[target])
		}
	}
	caps, err := strconv.ParseUint(got["caps"], 16, 64)
	if err != nil {
		t.Fatalf("CapEff %q", got["caps"])
	}
	const netAdmin, netRaw, mknod, sysAdmin = 12, 13, 27, 21
	for name, bit := range map[string]int{"NET_ADMIN": netAdmin, "NET_RAW": netRaw, "MKNOD": mknod, "SYS_ADMIN": sysAdmin} {
		if caps&(1<<bit) != 0 {
			t.Errorf("the app has %s (CapEff %s)", name, got["caps"])
		}
	}
}

// --egress-allow opens one private destination (a database on another
// machine), and only that one port of it.
func TestEgressAllow(t *testing.T) {
	outside := newPeer(t, "upso"+randHex(3))
	_, server := outside.pointToPoint()
	outside.serve(8080, "db")
	outside.serve(8081, "other")
	allow, err := ParseEgress(server.String() + ":8080")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(cfg *Config) { cfg.EgressAllow = []Egress{allow} })
	open, closed := server.String()+":8080", server.String()+":8081"
	got := e.probe("probe", open, closed)
	if got[open] != "reached" || got[closed] != "blocked" {
		t.Errorf("with %s allowed: %v", allow, got)
	}
}

func TestParseEgress(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.5.0/24": "10.0.5.0/24", "10.0.5.7": "10.0.5.7/32", "10.0.5.7:5432": "10.0.5.7/32:5432",
		"10.0.5.9/24:443": "10.0.5.0/24:443", "": "error", "10.0.5.7:0": "error", "10.0.5.7:65536": "error",
		"10.0.5.7:05432": "error", "::1": "error", "fe80::/10": "error", "10.0.5.7:x": "error", "host:80": "error",
	} {
		e, err := ParseEgress(in)
		got := e.String()
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("ParseEgress(%q) = %s (%v), want %s", in, got, err, want)
		}
	}
}

func FuzzParseEgress(f *testing.F) {
	f.Add("10.0.5.7:5432")
	f.Add("192.168.0.0/16")
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseEgress(s)
		if err != nil {
			return
		}
		// What reaches the nft script is an address, a prefix length and
		// a number: nothing else can be smuggled in.
		if !e.Net.Addr().Is4() || strings.ContainsAny(e.String(), " ;{}\n\"") {
			t.Fatalf("ParseEgress(%q) = %s", s, e)
		}
		again, err := ParseEgress(e.String())
		if err != nil || again != e {
			t.Fatalf("%s does not parse back: %v %v", e, again, err)
		}
	})
}

func TestNetworkSetupAndRemoval(t *testing.T) {
	e := newEnv(t, nil)
	ifc, err := net.InterfaceByName(e.cfg.Bridge)
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := ifc.Addrs()
	gw := e.cfg.Subnet.Addr().Next().String() + "/24"
	found := false
	for _, a := range addrs {
		found = found || a.String() == gw
	}
	if !found {
		t.Errorf("bridge addresses %v, want %s", addrs, gw)
	}
	out, err := exec.Command("nft", "list", "table", "ip", natTable(e.cfg.Bridge)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "masquerade") {
		t.Errorf("nat table: %v: %s", err, out)
	}
	for _, family := range []string{"inet", "bridge"} {
		if out, err := exec.Command("nft", "list", "table", family, natTable(e.cfg.Bridge)).CombinedOutput(); err != nil || !strings.Contains(string(out), "drop") {
			t.Errorf("%s filter table: %v: %s", family, err, out)
		}
	}
	// New is idempotent on an existing bridge and table.
	e.rt.Close()
	rt2, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.rt = rt2
	if err := rt2.RemoveNetwork(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.InterfaceByName(e.cfg.Bridge); err == nil {
		t.Error("bridge still there")
	}
	for _, family := range []string{"ip", "inet", "bridge"} {
		if err := exec.Command("nft", "list", "table", family, natTable(e.cfg.Bridge)).Run(); err == nil {
			t.Errorf("%s table still there", family)
		}
	}
}

func TestCreateRejects(t *testing.T) {
	e := newEnv(t, nil)
	good := e.spec("ok", "true")
	cases := map[string]func(*Spec){
		"bad name":        func(s *Spec) { s.Name = "../etc" },
		"upper name":      func(s *Spec) { s.Name = "Web" },
		"relative image":  func(s *Spec) { s.Image = "image" },
		"colon image":     func(s *Spec) { s.Image = "/tmp/a:b" },
		"missing image":   func(s *Spec) { s.Image = "/nonexistent" },
		"empty command":   func(s *Spec) { s.Command = " " },
		"bad env name":    func(s *Spec) { s.Env = map[string]string{"A-B": "x"} },
		"NUL in env":      func(s *Spec) { s.Env = map[string]string{"A": "x\x00y"} },
		"tiny memory":     func(s *Spec) { s.Memory = 1000 },
		"bad hostname":    func(s *Spec) { s.Hostname = "a b" },
		"missing app dir": func(s *Spec) { s.AppDir = "/nonexistent" },
		"host's ids":      func(s *Spec) { s.IDMapBase = 1000 },
		"ids past 2^32":   func(s *Spec) { s.IDMapBase = 1<<32 - 65536 },
	}
	for name, mod := range cases {
		s := good
		s.Env = map[string]string{}
		mod(&s)
		if _, err := e.rt.Create(context.Background(), s); err == nil {
			t.Errorf("%s: Create accepted %+v", name, s)
		}
	}
	if list, _ := e.rt.List(); len(list) != 0 {
		t.Errorf("rejected creates left %+v", list)
	}
}

// TestPythonStartTiming measures the goal (create + start until a Python
// http.server answers, <= 200 ms) on a real runtime image, e.g. one built
// by hostagent/images: UPSCALE_TEST_PYTHON_IMAGE=/path/to/shifted/rootfs.
func TestPythonStartTiming(t *testing.T) {
	img := os.Getenv("UPSCALE_TEST_PYTHON_IMAGE")
	if img == "" {
		t.Skip("UPSCALE_TEST_PYTHON_IMAGE not set")
	}
	e := newEnv(t, nil)
	for i := range 3 {
		name := fmt.Sprintf("py%d", i)
		s := Spec{
			Name:    name,
			Image:   img,
			AppDir:  e.appDir(map[string]string{"index.html": "py\n"}),
			Command: `exec python3 -m http.server "$PORT"`,
			Env:     map[string]string{"PORT": "8000"},
		}
		t0 := time.Now()
		c := e.create(s)
		created := time.Since(t0)
		t1 := time.Now()
		e.start(name)
		started := time.Since(t1)
		_, answered := httpGet(t, fmt.Sprintf("http://%s:8000/index.html", c.IP), 10*time.Second)
		t.Logf("python http.server: create %v, start %v, start→HTTP answer %v, total %v",
			created, started, answered, time.Since(t0))
		if err := e.rt.Destroy(context.Background(), name); err != nil {
			t.Fatal(err)
		}
	}
}

// With no range configured, a runtime takes root's and records it; the
// next one on the same lxcpath reads it back.
func TestIDMapRecorded(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.IDMapBase = 0 })
	if got := e.rt.IDMapBase(); got != testIDBase {
		t.Fatalf("IDMapBase = %d, want root's range %d", got, testIDBase)
	}
	if rec, err := readIDMap(e.cfg.LXCPath); err != nil || rec != testIDBase {
		t.Fatalf("recorded %d, %v; want %d", rec, err, testIDBase)
	}
	e.rt.Close()
	rt2, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.rt = rt2
	if got := rt2.IDMapBase(); got != testIDBase {
		t.Errorf("after a restart IDMapBase = %d, want %d", got, testIDBase)
	}
}
