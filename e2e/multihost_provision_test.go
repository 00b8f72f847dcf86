package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/upscalehq/upscale/cloud"
	"github.com/upscalehq/upscale/cloud/ec2test"
	"github.com/upscalehq/upscale/e2e/rig"
)

// The README's operator section, followed against a second host that is a
// network namespace with its own sshd: the server runs its own agent and
// advertises its bus, an admin adds the host over ssh as a user with
// passwordless sudo (the key on stdin), hosts list shows both, and
// instances: 2 puts one instance on each.
func TestMultiHostReadme(t *testing.T) {
	net := rig.NewHostNetwork(t)
	users := rig.NewHostUsers(t)
	// make run ARGS="--bus-listen 0.0.0.0:4222 --advertise 10.0.0.5"
	srv := rig.StartWithAgent(t, bin, "--bus-listen", fmt.Sprintf("0.0.0.0:%d", rig.FreePort(t)), "--advertise", net.Advertise,
		"--host-subnets", net.Subnets)
	d := &deployWorld{srv: srv, key: rig.NewKey(t, "admin")}
	mustLocal(t, srv, "keys", "add", "--admin", "--name", "me", "--public", d.key.Public)
	h := rig.NewHostNet(t, net, users)
	identity, err := os.ReadFile(users.Key.Path)
	if err != nil {
		t.Fatal(err)
	}
	// ssh -p 2222 upscale@10.0.0.5 hosts add --host 10.0.0.231 -u admin -i - \
	//   --host-key "'$(ssh-keyscan -t ed25519 10.0.0.231)'" < ~/.ssh/id_ed25519
	keyscan := h.IP + " " + h.HostKey()
	out := mustSSH(t, srv, d.key, string(identity), "hosts", "add", "--host", h.IP, "-u", users.Sudo, "-i", "-", "--dir", h.AgentDir,
		"--host-key", "'"+keyscan+"'")
	name := "h" + strings.ReplaceAll(h.IP, ".", "-")
	mustHave(t, out, "host key "+hostKeyFP(t, h)+" (as expected)", "root via sudo", "=====> Host "+name+" is up:")
	// ssh -p 2222 upscale@10.0.0.5 hosts list
	list := d.ssh(t, "hosts", "list")
	table, router, _ := strings.Cut(list, "\n\nrouter: ")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "HOST") || !strings.HasPrefix(router, "haproxy up") {
		t.Fatalf("hosts list:\n%s\nwant a header and two hosts", list)
	}
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) < 3 || f[2] != "up" {
			t.Errorf("hosts list row %q: want the host up", l)
		}
	}
	if !strings.Contains(list, name+" ") || !strings.Contains(list, h.IP) {
		t.Errorf("hosts list lacks %s at %s:\n%s", name, h.IP, list)
	}
	// From then on instances: 2 puts the two instances on two hosts.
	d.ssh(t, "namespace", "create", "acme")
	d.ssh(t, "app", "create", "acme/web")
	d.mustPush(t, rig.Repo(t, multiHostApp(t, "web", "runtime: python\ninstances: 2\nmemory: 128M\n")), "acme/web")
	where := map[string]string{}
	for _, p := range d.ps(t, "acme/web") {
		where[p.Host] = p.Name
	}
	if len(where) != 2 || where[name] == "" {
		t.Fatalf("acme/web runs on %v, want one instance here and one on %s", where, name)
	}
	seen := map[string]bool{}
	for range 30 {
		code, body := d.get("acme/web")
		if code != 200 {
			t.Fatalf("acme/web answered %d %q", code, body)
		}
		seen[body] = true
	}
	if !seen["web "+where[name]+"\n"] || len(seen) != 2 {
		t.Errorf("acme/web answered %v; want both instances, %s's included", seen, name)
	}
}

// hosts create --provider ec2 end to end: the EC2 stand-in plays AWS and
// cloud-init (its OnRun runs the instance's user data inside a network
// namespace), the user data fetches the agent over the server's real SSH
// with its one-time key, installs and starts it, and the host comes up
// and runs an app; destroy terminates the instance and its agent stops.
func TestMultiHostEC2Create(t *testing.T) {
	net := rig.NewHostNetwork(t)
	net.ServerSSH = true
	users := rig.NewHostUsers(t)
	h := rig.NewHostNet(t, net, users)
	var mu sync.Mutex
	var bootLog string
	ec2 := ec2test.New(ec2test.Config{
		Images:    []string{"ami-0debian12"},
		PrivateIP: func(string) string { return h.IP },
		OnRun: func(id string, userData []byte) {
			// The install goes under the test's directory, not /opt.
			script := strings.ReplaceAll(string(userData), cloud.DefaultDir, h.AgentDir)
			cmd := h.Command("sh", "-c", script)
			cmd.Env = append(os.Environ(), "UPSCALE_BOOTSTRAP_TRIES=5", "UPSCALE_BOOTSTRAP_WAIT=1",
				"UPSCALE_SYSTEMD_ROOT=/nonexistent-upscale-systemd")
			out, err := cmd.CombinedOutput()
			mu.Lock()
			bootLog = fmt.Sprintf("%s\n(exit: %v)", out, err)
			mu.Unlock()
		},
	})
	t.Cleanup(ec2.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAUPSCALEE2E")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "e2e-secret")
	srv := rig.StartForHosts(t, bin, net, "--ec2-endpoint", ec2.URL)
	d := &deployWorld{srv: srv, key: rig.NewKey(t, "admin")}
	mustLocal(t, srv, "keys", "add", "--admin", "--name", "admin", "--public", d.key.Public)
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			t.Logf("user data run:\n%s\nagent log:\n%s\nserver log:\n%s", bootLog, h.AgentLog(), tail(srv.Log(), 30))
			mu.Unlock()
		}
	})

	out, errs, code := srv.SSH(d.key, "", "hosts", "create", "--provider", "ec2", "--ami", "ami-0debian12", "--region", "eu-west-3", "--name", "ec2-a")
	if code != 0 {
		t.Fatalf("hosts create: exit %d: %s\n%s", code, errs, out)
	}
	mustHave(t, out, "-----> Starting an EC2 instance for ec2-a (t3.small, ami-0debian12)",
		"running at "+h.IP+"; it installs its agent now", "-----> Waiting for ec2-a to come up", "=====> Host ec2-a is up:")
	insts := ec2.Instances()
	if len(insts) != 1 || insts[0].State != "running" || insts[0].Tags["upscale:host"] != "ec2-a" {
		t.Fatalf("the stand-in has %+v, want one running instance tagged upscale:host=ec2-a", insts)
	}
	mu.Lock()
	boot := bootLog
	mu.Unlock()
	mustHave(t, boot, "-----> Fetching the agent from "+net.Advertise, "-----> Agent started for host ec2-a")
	if keys := d.ssh(t, "keys", "list"); strings.Contains(keys, "bootstrap-ec2-a") {
		t.Errorf("the one-time bootstrap key outlived the boot:\n%s", keys)
	}
	// The instance's key no longer fetches anything.
	if rows := hostRows(t, d); len(rows) != 1 || rows[0].Name != "ec2-a" || rows[0].State != "up" || rows[0].Address != h.IP {
		t.Fatalf("hosts list: %+v, want ec2-a up at %s", rows, h.IP)
	}

	d.ssh(t, "namespace", "create", "acme")
	d.ssh(t, "app", "create", "acme/web")
	d.mustPush(t, rig.Repo(t, multiHostApp(t, "web", "runtime: python\nmemory: 128M\n")), "acme/web")
	ps := d.ps(t, "acme/web")
	if len(ps) != 1 || ps[0].Host != "ec2-a" {
		t.Fatalf("acme/web runs %+v, want its instance on ec2-a", ps)
	}
	d.mustServe(t, "acme/web", "web "+ps[0].Name+"\n")

	// destroy refuses a host that still runs instances, then, drained,
	// terminates it.
	_, errs, code = srv.SSH(d.key, "", "hosts", "destroy", "ec2-a")
	if want := "error: host ec2-a still runs instances; move them first with hosts drain ec2-a\n"; code == 0 || errs != want {
		t.Errorf("destroy of a busy host: exit %d, stderr %q, want %q", code, errs, want)
	}
	d.ssh(t, "hosts", "drain", "--force", "ec2-a")
	out = d.ssh(t, "hosts", "destroy", "ec2-a")
	mustHave(t, out, "=====> Host ec2-a removed; its agent stops", "=====> Instance "+insts[0].ID+" terminated")
	deadline := time.Now().Add(15 * time.Second)
	for {
		inst, _ := ec2.Instance(insts[0].ID)
		// The supervisor writes its line just after the agent has exited.
		said := strings.Contains(h.AgentLog(), "upscale-agent exited 3 (credentials revoked): not restarting")
		if (inst.State == "terminated" || inst.State == "shutting-down") && len(h.AgentPIDs()) == 0 && said {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after destroy: instance %s, agents %v, supervisor said it would not restart: %v", inst.State, h.AgentPIDs(), said)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func hostRows(t *testing.T, d *deployWorld) []rig.HostRow {
	t.Helper()
	rows, err := rig.ParseHosts(d.ssh(t, "hosts", "list", "--format", "json"))
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// With --auto-rebalance, a host that joins gets its share at once: an app
// whose two instances had to share the only host is spread when the
// second one is added, without a request dropped.
func TestMultiHostAutoRebalance(t *testing.T) {
	net := rig.NewHostNetwork(t)
	users := rig.NewHostUsers(t)
	srv := rig.StartForHosts(t, bin, net, "--auto-rebalance")
	d := &deployWorld{srv: srv, key: rig.NewKey(t, "admin")}
	mustLocal(t, srv, "keys", "add", "--admin", "--name", "admin", "--public", d.key.Public)
	identity, err := os.ReadFile(users.Key.Path)
	if err != nil {
		t.Fatal(err)
	}
	// Trust on first use, said out loud: the fingerprint is shown.
	add := func(name string) string {
		h := rig.NewHostNet(t, net, users)
		out := mustSSH(t, srv, d.key, string(identity), "hosts", "add", "--host", h.IP, "-u", "root", "-i", "-", "--name", name, "--dir", h.AgentDir,
			"--trust-host-key")
		mustHave(t, out, "-----> Host key of "+h.IP+": "+hostKeyFP(t, h)+" (trusted on first use, not verified; pinned from now on)")
		return out
	}
	add("h1")
	d.ssh(t, "namespace", "create", "acme")
	d.ssh(t, "app", "create", "acme/web")
	d.mustPush(t, rig.Repo(t, multiHostApp(t, "web", "runtime: python\ninstances: 2\nmemory: 128M\n")), "acme/web")
	if ps := d.ps(t, "acme/web"); len(ps) != 2 || ps[0].Host != "h1" || ps[1].Host != "h1" {
		t.Fatalf("acme/web runs %+v, want both instances on h1, the only host", ps)
	}
	l := startPrefixLoop(t, srv, "acme/web", "web ")
	time.Sleep(300 * time.Millisecond)
	out := add("h2")
	time.Sleep(500 * time.Millisecond)
	l.check(t, "while h2 joined and took an instance")
	mustHave(t, out, "=====> Host h2 is up:", "-----> Moved ", " from h1 to h2 as ", "=====> 1 instance(s) moved")
	hosts := map[string]int{}
	for _, p := range d.ps(t, "acme/web") {
		hosts[p.Host]++
	}
	if hosts["h1"] != 1 || hosts["h2"] != 1 {
		t.Errorf("after h2 joined acme/web runs %v instances per host, want one on each", hosts)
	}
}

// hosts add to a machine whose SSH server presents another key than the
// one given (a machine in the middle, or the wrong machine) is refused
// with both fingerprints before anything is sent to it: the agent, its
// bus credentials and the install stay here, and no host is recorded.
// Without a key, hosts add says how to get one.
func TestHostsAddOtherHostKeyRegression(t *testing.T) {
	net := rig.NewHostNetwork(t)
	users := rig.NewHostUsers(t)
	srv := rig.StartForHosts(t, bin, net)
	d := &deployWorld{srv: srv, key: rig.NewKey(t, "admin")}
	mustLocal(t, srv, "keys", "add", "--admin", "--name", "admin", "--public", d.key.Public)
	h := rig.NewHostNet(t, net, users)
	identity, err := os.ReadFile(users.Key.Path)
	if err != nil {
		t.Fatal(err)
	}
	other := rig.NewKey(t, "other-host")
	otherKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(other.Public))
	if err != nil {
		t.Fatal(err)
	}
	known := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(known, []byte(h.IP+" "+other.Public+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mismatch := "error: verifying the host key of " + h.IP + ":22: it is " + hostKeyFP(t, h) +
		", expected ssh-ed25519 " + ssh.FingerprintSHA256(otherKey) + "\n"
	base := []string{"hosts", "add", "--host", h.IP, "-u", "root", "-i", "-", "--name", "h1", "--dir", h.AgentDir}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no key", nil, "error: hosts add needs the host's SSH key: pass --host-key 'ssh-ed25519 AAAA...' (ssh-keyscan -t ed25519 " + h.IP +
			" prints it; check it out of band), --known-hosts FILE, or --trust-host-key to accept the key it presents now\n"},
		{"another key given", []string{"--host-key", "'" + other.Public + "'"}, mismatch},
		{"another key in known_hosts", []string{"--known-hosts", known}, mismatch},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errs, code := srv.SSH(d.key, string(identity), append(base, c.args...)...)
			if code == 0 || errs != c.want {
				t.Errorf("exit %d, stderr %q\nwant a non-zero exit and %q\nstdout:\n%s", code, errs, c.want, out)
			}
			if strings.Contains(out, "Uploading") {
				t.Errorf("hosts add went on to upload:\n%s", out)
			}
			if _, err := os.Stat(h.AgentDir); !os.IsNotExist(err) {
				t.Errorf("%s exists on the refused host: %v", h.AgentDir, err)
			}
			if rows := hostRows(t, d); len(rows) != 0 {
				t.Errorf("hosts list after the refusal: %+v, want no host", rows)
			}
			if routes, _ := exec.Command("ip", "route", "show", "root", net.Subnets).Output(); strings.Contains(string(routes), " via ") {
				t.Errorf("a route to a host subnet was added:\n%s", routes)
			}
		})
	}
}
