package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/upscalehq/upscale/e2e/rig"
)

// On a fresh machine the first user useradd makes takes ids 100000-165535
// (Debian cloud images ship such a user). Agents started after that must
// pick another range for their containers, and run them.
//
// The machine's own /etc/subuid is shared with every other test running at
// the same time, whose agents may have reserved a range already; so this
// test gives the server, its agent and useradd a copy of /etc in a mount
// namespace of their own, with empty subordinate id maps: a fresh machine
// as far as they can tell.
func TestSubIDsTakenByAUser(t *testing.T) {
	for _, p := range []string{"unshare", "useradd", "cp"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	etc := filepath.Join(t.TempDir(), "etc")
	if out, err := exec.Command("cp", "-a", "/etc", etc).CombinedOutput(); err != nil {
		t.Fatalf("copying /etc: %v: %s", err, out)
	}
	for _, f := range []string{"subuid", "subgid"} {
		if err := os.WriteFile(filepath.Join(etc, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// unshare execs the command, so the server keeps the pid the rig
	// signals to stop it.
	wrap := []string{"unshare", "--mount", "--propagation", "private",
		"sh", "-c", `mount --bind "$0" /etc && exec "$@"`, etc}

	user := "upse2e-subids"
	useradd := append(slices.Clone(wrap), "useradd", "-M", "-N", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", user)
	if out, err := exec.Command(useradd[0], useradd[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v: %s", err, out)
	}
	held := user + ":100000:65536\n"
	for _, f := range []string{"subuid", "subgid"} {
		if got := readFile(t, filepath.Join(etc, f)); got != held {
			t.Fatalf("after useradd, /etc/%s is %q; want %q (the range the agents used to take for granted)", f, got, held)
		}
	}
	if strings.Contains(readFile(t, "/etc/passwd"), user+":") {
		t.Fatalf("useradd wrote the machine's /etc/passwd, not the copy")
	}

	srv := rig.StartWrapped(t, wrap, bin)
	d := &deployWorld{srv: srv, key: rig.NewKey(t, "admin")}
	mustLocal(t, srv, "keys", "add", "--admin", "--name", "admin", "--public", d.key.Public)
	d.ssh(t, "namespace", "create", "acme")
	d.ssh(t, "app", "create", "acme/web")
	d.mustPush(t, rig.Repo(t, helloApp(t, "beside a user's ids", "runtime: python\ninstances: 2\n")), "acme/web")
	d.mustServe(t, "acme/web", "beside a user's ids\n")

	// The agent's own range, then acme's.
	want := held + "root:165536:65536\nroot:231072:65536\n"
	for _, f := range []string{"subuid", "subgid"} {
		if got := readFile(t, filepath.Join(etc, f)); got != want {
			t.Errorf("/etc/%s is %q; want the user's range kept and root's next to it: %q", f, got, want)
		}
	}
	// Every process of both instances runs as an id of acme's range.
	for _, p := range d.ps(t, "acme/web") {
		init := d.initPID(t, p.Name)
		for _, pid := range append([]int{init}, descendants(init)...) {
			for _, uid := range uids(t, pid) {
				if uid < 231072 || uid > 231072+65535 {
					t.Errorf("%s: process %d (%s) runs as host uid %d, want one of 231072-296607", p.Name, pid, cmdline(pid), uid)
				}
			}
		}
	}
	// The agent keeps its range across a restart of the platform.
	srv.Stop()
	srv.Run()
	srv.WaitHostUp()
	d.ssh(t, "app", "restart", "acme/web")
	d.mustServe(t, "acme/web", "beside a user's ids\n")
	if got := readFile(t, filepath.Join(etc, "subuid")); got != want {
		t.Errorf("after a restart /etc/subuid is %q; want %q", got, want)
	}
	if !strings.Contains(srv.Log(), "containers_root=165536") {
		t.Errorf("the agent did not say which ids it uses:\n%s", tail(srv.Log(), 30))
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// idRanges is the agent's record of its namespaces' id ranges.
func (d *deployWorld) idRanges(t *testing.T) map[string]uint32 {
	t.Helper()
	var rec struct {
		Namespaces map[string]uint32 `json:"namespaces"`
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(d.lxcpath(), ".idranges"))), &rec); err != nil {
		t.Fatalf("the agent's record of id ranges: %v", err)
	}
	return rec.Namespaces
}

// initPID is the host pid of a container's init, as LXC reports it.
func (d *deployWorld) initPID(t *testing.T, name string) int {
	t.Helper()
	out, errs, code := rig.Exec(exec.Command("lxc-info", "-P", d.lxcpath(), "-n", name, "-p", "-H"), "")
	if code != 0 {
		t.Fatalf("lxc-info %s: %s", name, errs)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("lxc-info -p %s: %q", name, out)
	}
	return pid
}

// Two namespaces' apps on one host run as different host uids, from ranges
// that do not meet: a process escaping acme's container owns none of
// globex's files, nor the image globex's containers run on, and the other
// way round. Before, every container of the host ran as ids 100000-165535.
// The ranges stay the same when the agent restarts.
func TestNamespaceIDRangesRegression(t *testing.T) {
	d := newDeployWorld(t)
	d.ssh(t, "namespace", "create", "globex")
	d.ssh(t, "app", "create", "globex/web")
	for _, app := range []string{"acme/web", "globex/web"} {
		files := helloApp(t, app, "runtime: python\n")
		// The app writes a file of its own when it starts.
		files["app.py"] = "open('/tmp/made-by-app', 'w').write('mine')\n" + files["app.py"]
		d.mustPush(t, rig.Repo(t, files), app)
		d.mustServe(t, app, app+"\n")
	}
	ranges := d.idRanges(t)
	acme, globex := ranges["acme"], ranges["globex"]
	if acme == 0 || globex == 0 || (acme < globex+65536 && globex < acme+65536) {
		t.Fatalf("id ranges acme %d, globex %d: want two that do not meet", acme, globex)
	}
	check := func(when string) {
		t.Helper()
		for _, c := range []struct {
			app         string
			own, other  uint32
			ownNS, ofNS string
		}{{"acme/web", acme, globex, "acme", "globex"}, {"globex/web", globex, acme, "globex", "acme"}} {
			in := func(id, base uint32) bool { return id >= base && id < base+65536 }
			ps := d.ps(t, c.app)
			if len(ps) == 0 {
				t.Fatalf("%s: %s has no instance", when, c.app)
			}
			for _, p := range ps {
				init := d.initPID(t, p.Name)
				for _, pid := range append([]int{init}, descendants(init)...) {
					for _, uid := range uids(t, pid) {
						if !in(uint32(uid), c.own) || in(uint32(uid), c.other) {
							t.Errorf("%s: %s: process %d (%s) runs as host uid %d, want one of %s's %d-%d",
								when, p.Name, pid, cmdline(pid), uid, c.ownNS, c.own, c.own+65535)
						}
					}
				}
				upper := filepath.Join(d.lxcpath(), p.Name, "upper")
				for _, f := range []string{"tmp/made-by-app", "app/app.py"} {
					var st syscall.Stat_t
					if err := syscall.Lstat(filepath.Join(upper, f), &st); err != nil {
						t.Fatalf("%s: %s: %v", when, p.Name, err)
					}
					if !in(st.Uid, c.own) || in(st.Uid, c.other) || in(st.Gid, c.other) {
						t.Errorf("%s: %s's %s is owned by %d:%d on the host, want ids of %s's range, none of %s's",
							when, p.Name, f, st.Uid, st.Gid, c.ownNS, c.ofNS)
					}
				}
				// Its image is a copy shifted for its own range.
				config := readFile(t, filepath.Join(d.lxcpath(), p.Name, "config"))
				_, rest, ok := strings.Cut(config, "lxc.rootfs.path = overlay:")
				lower, _, _ := strings.Cut(rest, ":")
				var st syscall.Stat_t
				if err := syscall.Stat(filepath.Join(lower, "usr/bin/python3"), &st); !ok || err != nil || st.Uid != c.own {
					t.Errorf("%s: %s runs on %s whose python3 is owned by %d (%v), want %d", when, p.Name, lower, st.Uid, err, c.own)
				}
			}
		}
	}
	check("after the first deploys")

	d.srv.Stop()
	d.srv.Run()
	d.srv.WaitHostUp()
	d.ssh(t, "app", "restart", "acme/web")
	d.mustServe(t, "acme/web", "acme/web\n")
	if again := d.idRanges(t); again["acme"] != acme || again["globex"] != globex || len(again) != 2 {
		t.Errorf("after an agent restart the ranges are %v, want acme %d, globex %d", again, acme, globex)
	}
	check("after an agent restart and an app restart")
}
