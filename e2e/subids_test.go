package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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

	want := held + "root:165536:65536\n"
	for _, f := range []string{"subuid", "subgid"} {
		if got := readFile(t, filepath.Join(etc, f)); got != want {
			t.Errorf("/etc/%s is %q; want the user's range kept and root's next to it: %q", f, got, want)
		}
	}
	// Every process of both instances runs as an id of the new range.
	for _, p := range d.ps(t, "acme/web") {
		out, errs, code := rig.Exec(exec.Command("lxc-info", "-P", d.lxcpath(), "-n", p.Name, "-p", "-H"), "")
		if code != 0 {
			t.Fatalf("lxc-info %s: %s", p.Name, errs)
		}
		init, err := strconv.Atoi(strings.TrimSpace(out))
		if err != nil {
			t.Fatalf("lxc-info -p: %q", out)
		}
		for _, pid := range append([]int{init}, descendants(init)...) {
			for _, uid := range uids(t, pid) {
				if uid < 165536 || uid > 165536+65535 {
					t.Errorf("%s: process %d (%s) runs as host uid %d, want one of 165536-231071", p.Name, pid, cmdline(pid), uid)
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
