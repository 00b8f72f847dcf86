package cloud_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/upscalehq/upscale/cloud"
	"golang.org/x/crypto/ssh"
)

// sshRig is a real OpenSSH sshd in its own network namespace, reached from
// the root namespace over a veth pair with a /30, plus throwaway users:
// one with passwordless sudo, one without.
type sshRig struct {
	id             string // random, in every name the rig makes
	ns             string
	rootIP, nsIP   string
	conf           string // sshd config directory
	hostKey        ssh.PublicKey
	key, wrongKey  []byte // client identities (PEM)
	sudoUser, user string
	bootUser       string // answers "hosts bootstrap HOST" with conf/agent.tar
	fakeBin        string // first on PATH of root sessions
	aptLog         string
	sshd           *exec.Cmd
	sshdLog        *syncBuffer
	unreachable    string // an address routed to "unreachable"
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// requireE2E skips unless this test can run: root, sshd and ip present.
// With UPSCALE_E2E=1 (make test, CI) a missing piece fails instead.
func requireE2E(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, bin := range []string{"/usr/sbin/sshd", "ip", "useradd", "userdel"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "SSH provisioning e2e needs " + strings.Join(missing, ", ") + " (apt-get install openssh-server iproute2 passwd; run as root)"
	if os.Getenv("UPSCALE_E2E") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func must(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// cleanup runs name args at cleanup, logging (not failing on) errors:
// cleaning up after a failure must go as far as it can.
func cleanup(t *testing.T, name string, args ...string) {
	t.Cleanup(func() {
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Logf("cleanup %s %s: %v %s", name, strings.Join(args, " "), err, out)
		}
	})
}

func randInt(n int64) int {
	v, _ := rand.Int(rand.Reader, big.NewInt(n))
	return int(v.Int64())
}

func privatePEM(t *testing.T) ([]byte, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pub)
	return pem.EncodeToMemory(block), sp
}

// ensureSudo installs sudo when missing: the passwordless-sudo case needs
// the real thing.
func ensureSudo(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("sudo"); err == nil {
		return
	}
	install := func() error {
		cmd := exec.Command("apt-get", "install", "-y", "-qq", "sudo")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := install(); err != nil {
		exec.Command("apt-get", "update", "-qq").Run()
		if err := install(); err != nil {
			t.Fatalf("installing sudo: %v", err)
		}
	}
}

func newSSHRig(t *testing.T) *sshRig {
	t.Helper()
	requireE2E(t)
	ensureSudo(t)
	b := make([]byte, 2)
	rand.Read(b)
	r := &sshRig{id: hex.EncodeToString(b), sshdLog: &syncBuffer{}}
	r.ns = "upse2e-ssh-" + r.id
	vethRoot, vethNS := "upsh"+r.id+"r", "upsh"+r.id+"n"
	third, fourth := randInt(256), 4*randInt(64)
	r.rootIP = fmt.Sprintf("10.254.%d.%d", third, fourth+1)
	r.nsIP = fmt.Sprintf("10.254.%d.%d", third, fourth+2)
	r.unreachable = fmt.Sprintf("10.253.%d.%d", randInt(256), 1+randInt(254))

	must(t, "ip", "netns", "add", r.ns)
	cleanup(t, "ip", "netns", "del", r.ns)
	must(t, "ip", "link", "add", vethRoot, "type", "veth", "peer", "name", vethNS)
	t.Cleanup(func() { exec.Command("ip", "link", "del", vethRoot).Run() }) // gone with the namespace, usually
	must(t, "ip", "link", "set", vethNS, "netns", r.ns)
	must(t, "ip", "addr", "add", r.rootIP+"/30", "dev", vethRoot)
	must(t, "ip", "link", "set", vethRoot, "up")
	must(t, "ip", "-n", r.ns, "addr", "add", r.nsIP+"/30", "dev", vethNS)
	must(t, "ip", "-n", r.ns, "link", "set", vethNS, "up")
	must(t, "ip", "-n", r.ns, "link", "set", "lo", "up")
	must(t, "ip", "route", "add", "unreachable", r.unreachable+"/32")
	cleanup(t, "ip", "route", "del", "unreachable", r.unreachable+"/32")

	// Users: one with passwordless sudo, one without. "*" rather than the
	// locked "!" useradd leaves: sshd without PAM refuses locked accounts.
	r.sudoUser, r.user, r.bootUser = "upse2e-"+r.id+"-s", "upse2e-"+r.id+"-n", "upse2e-"+r.id+"-b"
	for _, u := range []string{r.sudoUser, r.user, r.bootUser} {
		must(t, "useradd", "-M", "-N", "-d", "/nonexistent", "-s", "/bin/sh", u)
		cleanup(t, "userdel", u)
		must(t, "usermod", "-p", "*", u)
	}
	sudoers := "/etc/sudoers.d/upse2e-" + r.id
	// env_keep: the sudo case runs the script under the same simulated
	// absence of systemd as the root case.
	rule := fmt.Sprintf("%s ALL=(ALL) NOPASSWD: ALL\nDefaults:%s env_keep += \"UPSCALE_SYSTEMD_ROOT\"\n", r.sudoUser, r.sudoUser)
	if err := os.WriteFile(sudoers, []byte(rule), 0o440); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(sudoers) })
	must(t, "visudo", "-cf", sudoers)

	// Not t.TempDir: its parent is 0700, and sshd reads authorized keys as
	// the user logging in.
	conf, err := os.MkdirTemp("", "upscale-e2e-cloud-sshd-")
	if err != nil {
		t.Fatal(err)
	}
	r.conf = conf
	t.Cleanup(func() { os.RemoveAll(conf) })
	os.Chmod(r.conf, 0o755)
	hostPEM, hostKey := privatePEM(t)
	r.hostKey = hostKey
	if err := os.WriteFile(filepath.Join(r.conf, "host_ed25519"), hostPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	var pub ssh.PublicKey
	r.key, pub = privatePEM(t)
	r.wrongKey, _ = privatePEM(t)
	auth := filepath.Join(r.conf, "authorized")
	os.Mkdir(auth, 0o755)
	for _, u := range []string{"root", r.sudoUser, r.user} {
		if err := os.WriteFile(filepath.Join(auth, u), ssh.MarshalAuthorizedKey(pub), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r.fakeBin, r.aptLog = r.fakeAptTools(t)

	// The privilege separation directory sshd insists on.
	if _, err := os.Stat("/run/sshd"); os.IsNotExist(err) {
		os.MkdirAll("/run/sshd", 0o755)
		t.Cleanup(func() { os.Remove("/run/sshd") })
	}
	// The bootstrap user plays the Upscale server's side of UserData.
	bootstrap := fmt.Sprintf(`printf '%%s\n' "$SSH_ORIGINAL_COMMAND" >> %[1]s/bootstrap.log
case "$SSH_ORIGINAL_COMMAND" in "hosts bootstrap "*) exec cat %[1]s/agent.tar ;; esac
echo "unknown command" >&2
exit 1
`, r.conf)
	if err := os.WriteFile(filepath.Join(r.conf, "bootstrap.sh"), []byte(bootstrap), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(r.conf, "bootstrap.log"), nil, 0o666)
	os.Chmod(filepath.Join(r.conf, "bootstrap.log"), 0o666)
	config := fmt.Sprintf(`ListenAddress %s
ListenAddress %s:2222
HostKey %s/host_ed25519
AuthorizedKeysFile %s/%%u
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile %s/sshd.pid
LogLevel VERBOSE
SetEnv UPSCALE_SYSTEMD_ROOT=/nonexistent-upscale-systemd PATH=%s:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
Match User %s
	ForceCommand /bin/sh %s/bootstrap.sh
`, r.nsIP, r.nsIP, r.conf, auth, r.conf, r.fakeBin, r.bootUser, r.conf)
	cfgFile := filepath.Join(r.conf, "sshd_config")
	if err := os.WriteFile(cfgFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	r.sshd = exec.Command("ip", "netns", "exec", r.ns, "/usr/sbin/sshd", "-D", "-e", "-f", cfgFile, "-p", "22")
	r.sshd.Stdout, r.sshd.Stderr = r.sshdLog, r.sshdLog
	if err := r.sshd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.sshd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { r.sshd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			r.sshd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("sshd log:\n%s", r.sshdLog.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(r.nsIP, "22"), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd does not listen on %s:22: %v\n%s", r.nsIP, err, r.sshdLog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return r
}

// fakeAptTools puts apt-get and dpkg-query in front of root sessions' PATH:
// dpkg-query asks the real one except for the package
// upscale-e2e-missing, which apt-get then fails to install as apt does.
// No test touches the machine's real packages.
func (r *sshRig) fakeAptTools(t *testing.T) (bin, log string) {
	bin = t.TempDir()
	os.Chmod(bin, 0o755)
	log = filepath.Join(bin, "apt.log")
	tools := map[string]string{
		"dpkg-query": `#!/bin/sh
for p in "$@"; do pkg=$p; done
[ "$pkg" = upscale-e2e-missing ] && { echo "dpkg-query: no packages found matching $pkg" >&2; exit 1; }
exec /usr/bin/dpkg-query "$@"
`,
		"apt-get": `#!/bin/sh
printf '%s\n' "apt-get $*" >> '` + log + `'
case " $* " in
*" update "*) exit 0 ;;
*" install "*"upscale-e2e-missing"*) echo "Reading package lists..."; echo "E: Unable to locate package upscale-e2e-missing" >&2; exit 100 ;;
esac
echo "E: the e2e fake apt-get does not install anything" >&2
exit 1
`,
	}
	for name, body := range tools {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return bin, log
}

// install is an Install under a unique /tmp directory with a stub agent,
// and the paths the stub reports to.
type e2eInstall struct {
	in                     cloud.Install
	starts, plan, teardown string
}

func (r *sshRig) newInstall(t *testing.T, name string) *e2eInstall {
	t.Helper()
	dir := "/tmp/upscale-e2e-cloud-" + r.id + "-" + name
	t.Cleanup(func() {
		killUnder(t, dir)
		os.RemoveAll(dir)
	})
	report := t.TempDir()
	os.Chmod(report, 0o777)
	e := &e2eInstall{
		starts:   filepath.Join(report, "starts"),
		plan:     filepath.Join(report, "plan"),
		teardown: filepath.Join(report, "teardown"),
	}
	agent := filepath.Join(report, "upscale-agent")
	if err := os.WriteFile(agent, []byte(stubAgent(e.starts, e.plan, e.teardown)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.in = cloud.Install{
		Host:        "h" + name,
		Address:     r.nsIP,
		Subnet:      "10.77.9.0/24",
		Credentials: []byte(`{"url":"nats://` + r.rootIP + `:4222","password":"e2e-secret"}`),
		Agent:       agent,
		Dir:         dir,
		Packages:    []string{"iproute2"},
		ImageCache:  dir + "-images",
	}
	return e
}

func (r *sshRig) target(user string, key []byte) cloud.SSHTarget {
	return cloud.SSHTarget{Addr: r.nsIP, User: user, Identity: key, HostKeys: []ssh.PublicKey{r.hostKey}}
}

// nsInode is the network namespace of sshd, as /proc/PID/ns/net reads.
func (r *sshRig) nsInode(t *testing.T) string {
	t.Helper()
	ns, err := os.Readlink("/proc/" + strconv.Itoa(r.sshd.Process.Pid) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if self, _ := os.Readlink("/proc/self/ns/net"); self == ns {
		t.Fatal("sshd runs in the test's own network namespace")
	}
	return ns
}

func provisionCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// checkProgress compares progress lines with patterns (regexps, anchored).
func checkProgress(t *testing.T, got []string, want ...string) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = regexp.MustCompile("^" + want[i] + "$").MatchString(got[i])
	}
	if !ok {
		t.Errorf("progress:\n%s\nwant (patterns):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestProvisionE2E(t *testing.T) {
	r := newSSHRig(t)
	ns := r.nsInode(t)
	q := regexp.QuoteMeta
	fp := q(r.hostKey.Type() + " " + ssh.FingerprintSHA256(r.hostKey))

	// What trust on first use pins: the key sshd presents.
	if k, err := cloud.ScanHostKey(provisionCtx(t), r.nsIP, 0); err != nil || !bytes.Equal(k.Marshal(), r.hostKey.Marshal()) {
		t.Errorf("ScanHostKey = %v, %v; want sshd's key %s", k, err, ssh.FingerprintSHA256(r.hostKey))
	}
	if _, err := cloud.ScanHostKey(provisionCtx(t), r.nsIP+":2", 0); err == nil || err.Error() != "connecting to "+r.nsIP+":2: dial tcp "+r.nsIP+":2: connect: connection refused" {
		t.Errorf("ScanHostKey of a closed port: %v", err)
	}

	for _, c := range []struct {
		name, user, how string
	}{
		{"root", "root", "as root"},
		{"sudo", r.sudoUser, "root via sudo"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := r.newInstall(t, c.name)
			size := "0.0"
			if c.name == "sudo" {
				// A binary of a real agent's size, through sudo's stdin:
				// the stub never reads past its endless loop.
				f, err := os.OpenFile(e.in.Agent, os.O_APPEND|os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				f.Write(append([]byte("# "), bytes.Repeat([]byte("x"), 24e6)...))
				f.Close()
				size = "24.0"
			}
			var progress []string
			key, err := cloud.Provision(provisionCtx(t), r.target(c.user, r.key), e.in, func(l string) { progress = append(progress, l) })
			if err != nil {
				t.Fatalf("%v\nprogress:\n%s", err, strings.Join(progress, "\n"))
			}
			if key == nil || !bytes.Equal(key.Marshal(), r.hostKey.Marshal()) {
				t.Errorf("Provision returned host key %v, want sshd's", key)
			}
			dir := e.in.Dir
			checkProgress(t, progress,
				q("-----> Connecting to "+r.nsIP+":22 as "+c.user),
				q("       host key ")+fp+q(" (as expected)"),
				q("-----> Checking "+r.nsIP),
				q("       Debian ")+`\S+`+q(", "+c.how),
				q("-----> Uploading the agent ("+size+" MB)"),
				q("-----> Uploading the credentials"),
				q("-----> Running the install script as root"),
				q("-----> Checking "+dir),
				q("-----> Packages already installed: iproute2"),
				q("-----> Starting the agent as a supervised process (no systemd)"),
				q("       supervisor pid ")+`\d+`+q(", log "+dir+"/agent.log"),
				q("-----> Agent started for host h"+c.name),
			)
			for file, want := range map[string]os.FileMode{"upscale-agent": 0o755, "credentials.json": 0o600} {
				fi, err := os.Stat(filepath.Join(dir, file))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != want || fi.Sys().(*syscall.Stat_t).Uid != 0 {
					t.Errorf("%s: mode %o uid %d, want %o and root", file, fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Uid, want)
				}
			}
			if got, _ := os.ReadFile(filepath.Join(dir, "credentials.json")); !bytes.Equal(got, e.in.Credentials) {
				t.Error("credentials differ from the ones given")
			}
			eventually(t, 5*time.Second, "the agent starts", func() bool { return len(lines(e.starts)) == 1 })
			first := strings.SplitN(lines(e.starts)[0], " ", 3)
			wantArgs := "--credentials " + dir + "/credentials.json --name h" + c.name + " --state " + dir + "/state --lxcpath " + dir +
				"/state/containers --images " + dir + "-images --bridge upsbr0 --subnet 10.77.9.0/24 --address " + r.nsIP
			if first[1] != ns || first[2] != wantArgs {
				t.Errorf("agent started in %s with\n%s\nwant %s with\n%s", first[1], first[2], ns, wantArgs)
			}
			agentPid, _ := strconv.Atoi(first[0])
			if status, _ := os.ReadFile("/proc/" + first[0] + "/status"); !regexp.MustCompile(`(?m)^Uid:\s+0\s`).Match(status) {
				t.Errorf("the agent does not run as root:\n%s", status)
			}
			for _, l := range progress {
				if strings.Contains(l, "e2e-secret") {
					t.Errorf("progress shows the credentials: %q", l)
				}
			}

			// Again with the host key pinned: the upgrade path.
			progress = nil
			if _, err := cloud.Provision(provisionCtx(t), cloud.SSHTarget{Addr: r.nsIP + ":22", User: c.user, Identity: r.key, HostKeys: []ssh.PublicKey{key}}, e.in, func(l string) { progress = append(progress, l) }); err != nil {
				t.Fatalf("re-provision: %v", err)
			}
			if len(progress) < 2 || progress[1] != "       host key "+r.hostKey.Type()+" "+ssh.FingerprintSHA256(r.hostKey)+" (as expected)" {
				t.Errorf("pinned progress: %q", progress)
			}
			eventually(t, 5*time.Second, "the upgraded agent starts", func() bool { return len(lines(e.starts)) == 2 })
			if alive(agentPid) {
				t.Error("the old agent still runs after the upgrade")
			}
			second, _ := strconv.Atoi(strings.Fields(lines(e.starts)[1])[0])

			progress = nil
			if err := cloud.Deprovision(provisionCtx(t), r.target(c.user, r.key), e.in, func(l string) { progress = append(progress, l) }); err != nil {
				t.Fatalf("deprovision: %v\n%s", err, strings.Join(progress, "\n"))
			}
			checkProgress(t, progress,
				q("-----> Connecting to "+r.nsIP+":22 as "+c.user),
				q("       host key ")+fp+q(" (as expected)"),
				q("-----> Checking "+r.nsIP),
				q("       Debian ")+`\S+`+q(", "+c.how),
				q("-----> Running the uninstall script as root"),
				q("-----> Stopping the agent"),
				q("-----> Destroying the agent's containers"),
				q("-----> Removing "+dir),
			)
			if alive(second) {
				t.Error("the agent still runs after Deprovision")
			}
			wantTD := "--teardown --state " + dir + "/state --bridge upsbr0 --subnet 10.77.9.0/24"
			if td := lines(e.teardown); len(td) != 1 || td[0] != wantTD {
				t.Errorf("teardown calls %q, want %q", td, wantTD)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("%s still there", dir)
			}
		})
	}

	// Each failure is one exact line, and nothing is left on the host.
	silent, err := net.Listen("tcp", net.JoinHostPort(r.rootIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	_, otherHostKey := privatePEM(t)
	_, thirdHostKey := privatePEM(t)
	pin := []ssh.PublicKey{r.hostKey}
	for _, c := range []struct {
		name   string
		target cloud.SSHTarget
		pkgs   []string
		want   string
	}{
		{"closed port", cloud.SSHTarget{Addr: r.nsIP + ":2", User: "root", Identity: r.key, HostKeys: pin},
			nil, "connecting to " + r.nsIP + ":2: dial tcp " + r.nsIP + ":2: connect: connection refused"},
		{"no route", cloud.SSHTarget{Addr: r.unreachable, User: "root", Identity: r.key, HostKeys: pin},
			nil, "connecting to " + r.unreachable + ":22: dial tcp " + r.unreachable + ":22: connect: no route to host"},
		{"no answer", cloud.SSHTarget{Addr: silent.Addr().String(), User: "root", Identity: r.key, Timeout: 300 * time.Millisecond, HostKeys: pin},
			nil, "connecting to " + silent.Addr().String() + ": no SSH handshake within 300ms"},
		{"wrong key", r.target("root", r.wrongKey),
			nil, "authenticating as root on " + r.nsIP + ":22: the key was refused"},
		{"unknown user", r.target("upse2e-"+r.id+"-x", r.key),
			nil, "authenticating as upse2e-" + r.id + "-x on " + r.nsIP + ":22: the key was refused"},
		{"no sudo", r.target(r.user, r.key),
			nil, r.nsIP + " needs root or passwordless sudo for user " + r.user},
		{"host key mismatch", cloud.SSHTarget{Addr: r.nsIP, User: "root", Identity: r.key, HostKeys: []ssh.PublicKey{otherHostKey}},
			nil, "verifying the host key of " + r.nsIP + ":22: it is ssh-ed25519 " + ssh.FingerprintSHA256(r.hostKey) + ", expected ssh-ed25519 " + ssh.FingerprintSHA256(otherHostKey)},
		{"host key none of two", cloud.SSHTarget{Addr: r.nsIP, User: "root", Identity: r.key, HostKeys: []ssh.PublicKey{otherHostKey, thirdHostKey}},
			nil, "verifying the host key of " + r.nsIP + ":22: it is ssh-ed25519 " + ssh.FingerprintSHA256(r.hostKey) + ", expected ssh-ed25519 " +
				ssh.FingerprintSHA256(otherHostKey) + " or ssh-ed25519 " + ssh.FingerprintSHA256(thirdHostKey)},
		{"no host key", cloud.SSHTarget{Addr: r.nsIP, User: "root", Identity: r.key},
			nil, "no host key to verify " + r.nsIP + ":22 against"},
		{"apt fails", r.target("root", r.key),
			[]string{"upscale-e2e-missing"}, "installing packages on " + r.nsIP + ": apt-get exited 100: E: Unable to locate package upscale-e2e-missing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := r.newInstall(t, strings.ReplaceAll(c.name, " ", "-"))
			if c.pkgs != nil {
				e.in.Packages = c.pkgs
			}
			var progress []string
			_, err := cloud.Provision(provisionCtx(t), c.target, e.in, func(l string) { progress = append(progress, l) })
			if err == nil || err.Error() != c.want {
				t.Errorf("err = %v\nwant  %s\nprogress:\n%s", err, c.want, strings.Join(progress, "\n"))
			}
			if c.pkgs == nil {
				if _, err := os.Stat(e.in.Dir); !os.IsNotExist(err) {
					t.Errorf("%s was created", e.in.Dir)
				}
			} else if len(lines(e.starts)) != 0 {
				t.Error("the agent started although its packages failed")
			}
		})
	}
}

func TestProvisionRefusesPassphraseKey(t *testing.T) {
	// A fixture: Go's bcrypt KDF takes seconds under -race.
	protected, err := os.ReadFile("testdata/passphrase_ed25519")
	if err != nil {
		t.Fatal(err)
	}
	agent := filepath.Join(t.TempDir(), "upscale-agent")
	os.WriteFile(agent, []byte("#!/bin/sh\n"), 0o755)
	in := cloud.Install{Host: "h1", Subnet: "10.77.3.0/24", Agent: agent, Credentials: []byte("{}")}
	_, err = cloud.Provision(context.Background(), cloud.SSHTarget{Addr: "127.0.0.1:1", User: "root", Identity: protected}, in, nil)
	want := "reading the identity: the key is protected by a passphrase; give a key without one"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
	_, err = cloud.Provision(context.Background(), cloud.SSHTarget{Addr: "127.0.0.1:1", User: "root", Identity: []byte("not a key")}, in, nil)
	want = "reading the identity: no key found"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
	in.Credentials = nil
	if _, err := cloud.Provision(context.Background(), cloud.SSHTarget{}, in, nil); err == nil || err.Error() != "no agent credentials to install" {
		t.Errorf("no credentials: %v", err)
	}
}
