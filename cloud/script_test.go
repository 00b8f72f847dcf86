package cloud_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/cloud"
)

// scriptRig is a host in a temp directory: Install.Dir with the stub agent
// and credentials in place, fake package and service tools first on PATH.
type scriptRig struct {
	in                      cloud.Install
	starts, plan, teardown  string
	tools, calls, systemdFS string
	env                     []string
}

func newScriptRig(t *testing.T, systemd bool) *scriptRig {
	t.Helper()
	base := t.TempDir()
	r := &scriptRig{
		in: cloud.Install{
			Host:       "h1",
			Address:    "10.0.0.231",
			Subnet:     "10.77.3.0/24",
			Dir:        filepath.Join(base, "upscale-agent"),
			ImageCache: filepath.Join(base, "images"),
		},
		starts:    filepath.Join(base, "starts"),
		plan:      filepath.Join(base, "plan"),
		teardown:  filepath.Join(base, "teardown"),
		systemdFS: filepath.Join(base, "systemd-root"),
	}
	t.Cleanup(func() { killUnder(t, r.in.Dir) })
	if err := os.MkdirAll(r.in.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.in.Dir, "upscale-agent"), []byte(stubAgent(r.starts, r.plan, r.teardown)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.in.Dir, "credentials.json"), []byte(`{"password":"s3cret"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if systemd {
		if err := os.MkdirAll(filepath.Join(r.systemdFS, "run/systemd/system"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r.tools, r.calls = fakeTools(t)
	r.env = []string{"PATH=" + r.tools + ":" + os.Getenv("PATH"), "UPSCALE_SYSTEMD_ROOT=" + r.systemdFS}
	return r
}

func (r *scriptRig) setPlan(t *testing.T, plan ...string) {
	t.Helper()
	if err := os.WriteFile(r.plan, []byte(strings.Join(plan, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (r *scriptRig) wantArgs() string {
	d := r.in.Dir
	return "--credentials " + d + "/credentials.json --name h1 --state " + d + "/state --lxcpath " + d + "/state/containers --images " +
		r.in.ImageCache + " --bridge upsbr0 --subnet 10.77.3.0/24 --address 10.0.0.231"
}

// start is one line of the stub's starts file.
type start struct {
	pid        int
	netns, arg string
}

func (r *scriptRig) startsSoFar(t *testing.T) []start {
	t.Helper()
	var out []start
	for _, l := range lines(r.starts) {
		f := strings.SplitN(l, " ", 3)
		if len(f) != 3 {
			t.Fatalf("starts line %q", l)
		}
		pid, _ := strconv.Atoi(f[0])
		out = append(out, start{pid, f[1], f[2]})
	}
	return out
}

func TestScriptsParse(t *testing.T) {
	ins := []cloud.Install{
		{Host: "h1", Subnet: "10.77.3.0/24"},
		{Host: "web-2", Address: "10.0.0.5", Subnet: "10.77.4.0/24", Bridge: "br-web", Dir: "/srv/upscale", Packages: []string{"lxc", "g++"}, ImageCache: "/var/cache/x"},
		{Host: "Bad Host", Subnet: "10.77.3.0/24"},
	}
	for _, in := range ins {
		for name, script := range map[string]string{"Script": cloud.Script(in), "UninstallScript": cloud.UninstallScript(in)} {
			cmd := exec.Command("sh", "-n")
			cmd.Stdin = strings.NewReader(script)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s(%+v) does not parse: %v\n%s\n%s", name, in, err, out, script)
			}
			if !strings.HasPrefix(script, "#!/bin/sh\n") {
				t.Errorf("%s does not start with #!/bin/sh", name)
			}
		}
	}
}

func TestScriptRefusesBadInstall(t *testing.T) {
	out, status := runScript(t, cloud.Script(cloud.Install{Host: "h1", Subnet: "10.77.3.0/24", Dir: "/usr"}))
	want := `error: checking the install: install directory "/usr" must be at least two levels deep and its last element must contain "upscale"` + "\n"
	if status != 1 || out != want {
		t.Errorf("status %d, output %q\nwant %q", status, out, want)
	}
	out, status = runScript(t, cloud.UninstallScript(cloud.Install{Host: "h1; rm -rf /", Subnet: "10.77.3.0/24"}))
	want = `error: checking the install: invalid host name "h1; rm -rf /": use 1-40 lowercase letters, digits and dashes, starting with a letter` + "\n"
	if status != 1 || out != want {
		t.Errorf("status %d, output %q\nwant %q", status, out, want)
	}
}

func TestInstallCheck(t *testing.T) {
	ok := cloud.Install{Host: "h1", Subnet: "10.77.3.0/24"}
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mod  func(*cloud.Install)
		want string
	}{
		{func(i *cloud.Install) { i.Host = "" }, "host name is empty"},
		{func(i *cloud.Install) { i.Address = "10.0.0.1 --nat=false" }, `invalid host address "10.0.0.1 --nat=false"`},
		{func(i *cloud.Install) { i.Subnet = "10.77.3.1/24" }, `invalid container subnet "10.77.3.1/24": want a network such as 10.77.3.0/24`},
		{func(i *cloud.Install) { i.Subnet = "" }, `invalid container subnet "": want a network such as 10.77.3.0/24`},
		{func(i *cloud.Install) { i.Bridge = "a-bridge-name-too-long" }, `invalid bridge name "a-bridge-name-too-long": use up to 15 lowercase letters, digits and dashes`},
		{func(i *cloud.Install) { i.Dir = "opt/upscale" }, `invalid install directory "opt/upscale": want a clean absolute path of letters, digits, '.', '_', '-'`},
		{func(i *cloud.Install) { i.Dir = "/opt/upscale/../../etc" }, `invalid install directory "/opt/upscale/../../etc": want a clean absolute path of letters, digits, '.', '_', '-'`},
		{func(i *cloud.Install) { i.Dir = "/opt/my agent" }, `invalid install directory "/opt/my agent": want a clean absolute path of letters, digits, '.', '_', '-'`},
		{func(i *cloud.Install) { i.Dir = "/upscale" }, `install directory "/upscale" must be at least two levels deep and its last element must contain "upscale"`},
		{func(i *cloud.Install) { i.Dir = "/var/lib" }, `install directory "/var/lib" must be at least two levels deep and its last element must contain "upscale"`},
		{func(i *cloud.Install) { i.ImageCache = "/var/cache/%h" }, `invalid image cache "/var/cache/%h": want a clean absolute path of letters, digits, '.', '_', '-'`},
		{func(i *cloud.Install) { i.Packages = []string{"lxc", "curl;reboot"} }, `invalid Debian package name "curl;reboot"`},
	} {
		in := ok
		c.mod(&in)
		if err := in.Check(); err == nil || err.Error() != c.want {
			t.Errorf("%+v: %v\nwant %s", in, err, c.want)
		}
	}
}

func TestScriptSupervisedRestartsUntilRevoked(t *testing.T) {
	r := newScriptRig(t, false)
	r.setPlan(t, "1", "3")
	out, status := runScript(t, cloud.Script(r.in), r.env...)
	if status != 0 {
		t.Fatalf("status %d\n%s", status, out)
	}
	for _, want := range []string{
		"-----> Checking " + r.in.Dir + "\n",
		"-----> Packages already installed: lxc debootstrap nftables iproute2 ca-certificates\n",
		"-----> Starting the agent as a supervised process (no systemd)\n",
		"       supervisor pid ",
		"-----> Agent started for host h1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if m := mode(t, filepath.Join(r.in.Dir, "upscale-agent")); m != 0o755 {
		t.Errorf("agent mode %o", m)
	}
	if m := mode(t, filepath.Join(r.in.Dir, "credentials.json")); m != 0o600 {
		t.Errorf("credentials mode %o", m)
	}
	// Exit 1 restarts after a second; exit 3 (revoked) ends the loop.
	eventually(t, 5*time.Second, "the supervisor gives up after exit 3", func() bool {
		_, err := os.Stat(filepath.Join(r.in.Dir, "supervisor.pid"))
		return os.IsNotExist(err)
	})
	time.Sleep(1500 * time.Millisecond)
	starts := r.startsSoFar(t)
	if len(starts) != 2 {
		t.Fatalf("%d starts, want 2: %v", len(starts), starts)
	}
	for _, s := range starts {
		if s.arg != r.wantArgs() {
			t.Errorf("agent args\n%s\nwant\n%s", s.arg, r.wantArgs())
		}
	}
	log, _ := os.ReadFile(filepath.Join(r.in.Dir, "agent.log"))
	for _, want := range []string{
		"upscale-supervisor: upscale-agent exited 1: restarting in 1 s\n",
		"upscale-supervisor: upscale-agent exited 3 (credentials revoked): not restarting\n",
	} {
		if !strings.Contains(string(log), want) {
			t.Errorf("agent.log lacks %q:\n%s", want, log)
		}
	}
	if calls := lines(r.calls); len(calls) != 5 || strings.Contains(strings.Join(calls, "\n"), "apt-get") || strings.Contains(strings.Join(calls, "\n"), "systemctl") {
		t.Errorf("tool calls: %q", calls)
	}
}

func TestScriptSupervisedUpgradeAndUninstall(t *testing.T) {
	r := newScriptRig(t, false)
	r.setPlan(t, "run")
	if out, status := runScript(t, cloud.Script(r.in), r.env...); status != 0 {
		t.Fatalf("status %d\n%s", status, out)
	}
	sup1 := readPid(t, filepath.Join(r.in.Dir, "supervisor.pid"))
	eventually(t, 5*time.Second, "the agent starts", func() bool { return len(lines(r.starts)) == 1 })
	agent1 := r.startsSoFar(t)[0].pid

	// Re-running the script is the upgrade: a new loop, a new agent.
	if out, status := runScript(t, cloud.Script(r.in), r.env...); status != 0 {
		t.Fatalf("status %d\n%s", status, out)
	}
	sup2 := readPid(t, filepath.Join(r.in.Dir, "supervisor.pid"))
	if sup2 == sup1 || alive(sup1) || alive(agent1) {
		t.Errorf("after the upgrade: supervisor %d (alive %v) -> %d, old agent %d alive %v", sup1, alive(sup1), sup2, agent1, alive(agent1))
	}
	eventually(t, 5*time.Second, "the new agent starts", func() bool { return len(lines(r.starts)) == 2 })
	agent2 := r.startsSoFar(t)[1].pid

	// An agent that stops on its own (status 0 here) is started again.
	if err := syscallKill(agent2); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the agent restarts", func() bool { return len(lines(r.starts)) == 3 })
	if !alive(sup2) {
		t.Error("the supervisor died with its agent")
	}
	agent3 := r.startsSoFar(t)[2].pid

	out, status := runScript(t, cloud.UninstallScript(r.in), r.env...)
	if status != 0 {
		t.Fatalf("uninstall: status %d\n%s", status, out)
	}
	want := "-----> Stopping the agent\n-----> Destroying the agent's containers\n-----> Removing " + r.in.Dir + "\n"
	if out != want {
		t.Errorf("uninstall output %q\nwant %q", out, want)
	}
	if alive(sup2) || alive(agent3) {
		t.Errorf("after uninstall: supervisor alive %v, agent alive %v", alive(sup2), alive(agent3))
	}
	td := lines(r.teardown)
	wantTD := "--teardown --state " + r.in.Dir + "/state --bridge upsbr0 --subnet 10.77.3.0/24"
	if len(td) != 1 || td[0] != wantTD {
		t.Errorf("teardown calls %q, want %q", td, wantTD)
	}
	if _, err := os.Stat(r.in.Dir); !os.IsNotExist(err) {
		t.Errorf("%s still there: %v", r.in.Dir, err)
	}
	// Uninstalling what is gone already succeeds.
	if out, status := runScript(t, cloud.UninstallScript(r.in), r.env...); status != 0 {
		t.Errorf("second uninstall: status %d\n%s", status, out)
	}
}

func TestScriptSystemd(t *testing.T) {
	r := newScriptRig(t, true)
	out, status := runScript(t, cloud.Script(r.in), r.env...)
	if status != 0 {
		t.Fatalf("status %d\n%s", status, out)
	}
	want := "-----> Checking " + r.in.Dir + "\n" +
		"-----> Packages already installed: lxc debootstrap nftables iproute2 ca-certificates\n" +
		"-----> Starting upscale-agent-h1.service under systemd\n" +
		"       journalctl -u upscale-agent-h1.service shows its log\n" +
		"-----> Agent started for host h1\n"
	if out != want {
		t.Errorf("output\n%s\nwant\n%s", out, want)
	}
	unit, err := os.ReadFile(filepath.Join(r.systemdFS, "etc/systemd/system/upscale-agent-h1.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\nExecStart=" + r.in.Dir + "/upscale-agent " + r.wantArgs() + "\n",
		"\nKillMode=process\n",
		"\nRestart=always\n",
		"\nRestartSec=1\n",
		"\nRestartPreventExitStatus=3\n",
		"\nStartLimitIntervalSec=0\n",
		"\nDelegate=yes\n",
		"\nWantedBy=multi-user.target\n",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	calls := strings.Join(lines(r.calls), "\n")
	wantCalls := "systemctl daemon-reload\nsystemctl enable --quiet upscale-agent-h1.service\nsystemctl restart upscale-agent-h1.service"
	if !strings.HasSuffix(calls, wantCalls) {
		t.Errorf("calls:\n%s\nwant them to end with\n%s", calls, wantCalls)
	}
	if len(lines(r.starts)) != 0 {
		t.Error("the script started the agent itself under systemd")
	}
	if _, err := os.Stat(filepath.Join(r.in.Dir, "supervisor.pid")); err == nil {
		t.Error("a supervisor runs under systemd")
	}

	os.Truncate(r.calls, 0)
	out, status = runScript(t, cloud.UninstallScript(r.in), r.env...)
	if status != 0 {
		t.Fatalf("uninstall: status %d\n%s", status, out)
	}
	calls = strings.Join(lines(r.calls), "\n")
	if calls != "systemctl disable --now --quiet upscale-agent-h1.service\nsystemctl daemon-reload" {
		t.Errorf("uninstall calls:\n%s", calls)
	}
	if _, err := os.Stat(filepath.Join(r.systemdFS, "etc/systemd/system/upscale-agent-h1.service")); !os.IsNotExist(err) {
		t.Errorf("unit file left: %v", err)
	}
	if len(lines(r.teardown)) != 1 {
		t.Errorf("teardown calls: %q", lines(r.teardown))
	}
	if _, err := os.Stat(r.in.Dir); !os.IsNotExist(err) {
		t.Errorf("%s still there", r.in.Dir)
	}
}

func TestScriptInstallsMissingPackages(t *testing.T) {
	r := newScriptRig(t, true)
	out, status := runScript(t, cloud.Script(r.in), append(r.env, "FAKE_MISSING=lxc nftables")...)
	if status != 0 {
		t.Fatalf("status %d\n%s", status, out)
	}
	if !strings.Contains(out, "-----> Installing packages: lxc nftables\n") {
		t.Errorf("output:\n%s", out)
	}
	var apt []string
	for _, c := range lines(r.calls) {
		if strings.HasPrefix(c, "apt-get ") {
			apt = append(apt, c)
		}
	}
	want := []string{
		"apt-get -qq -o DPkg::Lock::Timeout=300 update",
		"apt-get -qq -y -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install lxc nftables",
	}
	if strings.Join(apt, "\n") != strings.Join(want, "\n") {
		t.Errorf("apt-get calls:\n%s\nwant\n%s", strings.Join(apt, "\n"), strings.Join(want, "\n"))
	}
}

func TestScriptAptFailure(t *testing.T) {
	r := newScriptRig(t, true)
	out, status := runScript(t, cloud.Script(r.in), append(r.env, "FAKE_MISSING=lxc", "FAKE_APT_FAIL=1")...)
	if status != 1 {
		t.Fatalf("status %d\n%s", status, out)
	}
	wantLast := "error: installing packages: apt-get exited 100: E: Unable to locate package nope\n"
	if !strings.HasSuffix(out, "-----> Installing packages: lxc\n"+wantLast) {
		t.Errorf("output:\n%s\nwant it to end with %q", out, wantLast)
	}
	step, cause, ok := cloud.ScriptError(out)
	if !ok || step != "installing packages" || cause != "apt-get exited 100: E: Unable to locate package nope" {
		t.Errorf("ScriptError = %q, %q, %v", step, cause, ok)
	}
	if strings.Contains(strings.Join(lines(r.calls), "\n"), "systemctl") {
		t.Error("the agent was started after the packages failed")
	}
}

func TestScriptNeedsFiles(t *testing.T) {
	r := newScriptRig(t, true)
	os.Remove(filepath.Join(r.in.Dir, "credentials.json"))
	out, status := runScript(t, cloud.Script(r.in), r.env...)
	want := "-----> Checking " + r.in.Dir + "\nerror: checking the agent files: " + r.in.Dir + "/credentials.json is missing\n"
	if status != 1 || out != want {
		t.Errorf("status %d, output %q\nwant %q", status, out, want)
	}
}

func TestScriptError(t *testing.T) {
	for _, c := range []struct {
		out, step, cause string
		ok               bool
	}{
		{"-----> x\nerror: installing packages: apt-get exited 100: E: x\n", "installing packages", "apt-get exited 100: E: x", true},
		{"error: a: b\nerror: c: d: e\r\n", "c", "d: e", true},
		{"error: damaged\n", "", "damaged", true},
		{"-----> fine\n", "", "", false},
		{"  error: indented: no\n", "", "", false},
	} {
		step, cause, ok := cloud.ScriptError(c.out)
		if step != c.step || cause != c.cause || ok != c.ok {
			t.Errorf("ScriptError(%q) = %q, %q, %v", c.out, step, cause, ok)
		}
	}
}
