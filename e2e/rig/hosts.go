package rig

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/upscalehq/upscale/router"
)

// Several hosts on one machine: each host is a network namespace
// upse2e-ID with a veth pair (upshIDr in the root namespace, upshIDn
// inside) and a real OpenSSH sshd listening on its own address inside it,
// so that `hosts add` installs a real agent there over SSH. The agent, its
// bridge (upsbr0: bridge names are per namespace), its containers and its
// NAT rule all live in the namespace; lxc's command socket is per
// namespace too, so its containers are asked about from inside.
//
// Names: namespaces upse2e-*, links upsh*, users upse2e-*-{s,n}, sudoers
// /etc/sudoers.d/upse2e-*, files under /tmp/upscale-e2e-hosts-ID: what
// make clean-test sweeps after a crashed run.

// HostNet is one host: a network namespace with its sshd.
type HostNet struct {
	ID       string
	NS       string // network namespace
	RootLink string // veth end in the root namespace
	RootIP   string // its address
	IP       string // the host's address (veth end inside)
	Dir      string // /tmp/upscale-e2e-hosts-ID
	// AgentDir is where hosts add --dir installs the agent.
	AgentDir string
	sshd     *exec.Cmd
	sshdLog  *syncBuffer
	t        TB
}

// HostUsers are the accounts every HostNet's sshd lets in with Key: root,
// a user with passwordless sudo and one without sudo.
type HostUsers struct {
	Key            Key // authorized for root, Sudo and NoSudo
	Sudo, NoSudo   string
	id             string
	authorizedKeys string // directory of per-user files, %u
}

// NewHostUsers makes the throwaway users and the key that logs them in.
// Cleanup removes the users and the sudoers file.
func NewHostUsers(t TB) *HostUsers {
	t.Helper()
	id := randomID(2)
	u := &HostUsers{Key: NewKey(t, "hostadmin"), Sudo: "upse2e-" + id + "-s", NoSudo: "upse2e-" + id + "-n", id: id}
	for _, name := range []string{u.Sudo, u.NoSudo} {
		mustRun(t, "useradd", "-M", "-N", "-d", "/nonexistent", "-s", "/bin/sh", name)
		user := name
		t.Cleanup(func() { exec.Command("userdel", user).Run() })
		// "*", not useradd's locked "!": sshd without PAM refuses locked
		// accounts.
		mustRun(t, "usermod", "-p", "*", name)
	}
	sudoers := "/etc/sudoers.d/upse2e-" + id
	rule := fmt.Sprintf("%s ALL=(ALL) NOPASSWD: ALL\nDefaults:%s env_keep += \"UPSCALE_SYSTEMD_ROOT\"\n", u.Sudo, u.Sudo)
	if err := os.WriteFile(sudoers, []byte(rule), 0o440); err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { os.Remove(sudoers) })
	mustRun(t, "visudo", "-cf", sudoers)
	// Not under t.TempDir: sshd reads authorized keys as the user logging
	// in, who must traverse to them.
	dir, err := os.MkdirTemp("", "upscale-e2e-hosts-keys-")
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	for _, name := range []string{"root", u.Sudo, u.NoSudo} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(u.Key.Public+"\n"), 0o644); err != nil {
			t.Fatalf("%v", err)
		}
	}
	u.authorizedKeys = dir
	return u
}

// HostNetwork is the addresses of a set of hosts: a /24 of veth pairs
// and the address the server advertises to them, on the
// root namespace's lo (reachable from every host whatever happens to the
// other hosts' links).
type HostNetwork struct {
	Base      string // "10.252.R"
	Advertise string // the server's address as the hosts reach it
	// Subnets is the range host container subnets come from (--host-subnets).
	Subnets string
	// ServerSSH makes StartForHosts's server listen for SSH on every
	// address, so that hosts reach it too (EC2 hosts fetch their agent
	// over it), not only 127.0.0.1.
	ServerSSH bool
	next      int
}

// NewHostNetwork picks random ranges that no other run on this machine
// uses (another test or bench may be running) and sets up the advertised
// address.
func NewHostNetwork(t TB) *HostNetwork {
	t.Helper()
	for try := 0; ; try++ {
		b := make([]byte, 2)
		rand.Read(b)
		n := &HostNetwork{
			Base:    fmt.Sprintf("10.252.%d", b[0]),
			Subnets: fmt.Sprintf("10.%d.0.0/16", 160+int(b[1])%40),
		}
		n.Advertise = n.Base + ".253"
		// Nothing for the hosts' containers ever leaves for the real
		// network: a host's own /24 route is more specific.
		if err := exec.Command("ip", "route", "add", "unreachable", n.Subnets).Run(); err != nil {
			if try < 20 {
				continue // taken
			}
			mustRun(t, "ip", "route", "add", "unreachable", n.Subnets)
		}
		// On lo: local delivery works whatever happens to the hosts'
		// links.
		if err := exec.Command("ip", "addr", "add", n.Advertise+"/32", "dev", "lo").Run(); err != nil {
			if try < 20 {
				exec.Command("ip", "route", "del", "unreachable", n.Subnets).Run()
				continue
			}
			mustRun(t, "ip", "addr", "add", n.Advertise+"/32", "dev", "lo")
		}
		t.Cleanup(func() { exec.Command("ip", "route", "del", "unreachable", n.Subnets).Run() })
		t.Cleanup(func() { exec.Command("ip", "addr", "del", n.Advertise+"/32", "dev", "lo").Run() })
		return n
	}
}

// StartForHosts runs a server without a local agent whose bus listens on
// every address and is advertised on n's address, with HAProxy on a free
// loopback port and host subnets from n.
func StartForHosts(t TB, bin string, n *HostNetwork, extra ...string) *Server {
	t.Helper()
	s := &Server{Bin: bin, Data: dataDir(t), t: t}
	s.HTTPPort = FreePort(t)
	var listen []string
	if n.ServerSSH {
		s.Port = FreePort(t)
		listen = []string{"--listen", fmt.Sprintf("0.0.0.0:%d", s.Port)}
	}
	s.Args = append(listen, []string{
		"--agent", "none",
		"--http", fmt.Sprintf("127.0.0.1:%d", s.HTTPPort),
		// Plain HTTP unless a test asks for HTTPS (WithHTTPS).
		"--https", "",
		"--bus-listen", fmt.Sprintf("0.0.0.0:%d", FreePort(t)),
		"--advertise", n.Advertise,
		"--host-subnets", n.Subnets,
	}...)
	s.Args = append(s.Args, extra...)
	t.Cleanup(func() {
		s.Stop()
		haltRouter(s)
	})
	s.Run()
	return s
}

// NewHostNet makes a host: namespace, veth pair, sshd on IP:22 letting
// users in. Cleanup stops whatever runs in it (the agent and its
// supervisor first, then its containers with upscale-agent --teardown run
// inside, then sshd), and removes the namespace, the links and the files.
func NewHostNet(t TB, n *HostNetwork, users *HostUsers) *HostNet {
	t.Helper()
	i := n.next
	n.next++
	if i >= 60 {
		t.Fatalf("too many hosts on one network")
	}
	id := randomID(3)
	h := &HostNet{
		ID: id, NS: "upse2e-" + id, RootLink: "upsh" + id + "r",
		RootIP: fmt.Sprintf("%s.%d", n.Base, 4*i+1), IP: fmt.Sprintf("%s.%d", n.Base, 4*i+2),
		Dir: "/tmp/upscale-e2e-hosts-" + id, sshdLog: &syncBuffer{}, t: t,
	}
	h.AgentDir = filepath.Join(h.Dir, "upscale-agent")
	// 0711: the containers' root (host uid 100000) traverses down to the
	// agent's state; 0755 lets sshd's users read their config.
	if err := os.MkdirAll(h.Dir, 0o755); err != nil {
		t.Fatalf("%v", err)
	}
	os.Chmod(h.Dir, 0o755)
	nsLink := "upsh" + id + "n"
	mustRun(t, "ip", "netns", "add", h.NS)
	t.Cleanup(h.teardown)
	mustRun(t, "ip", "link", "add", h.RootLink, "type", "veth", "peer", "name", nsLink)
	mustRun(t, "ip", "link", "set", nsLink, "netns", h.NS)
	mustRun(t, "ip", "addr", "add", h.RootIP+"/30", "dev", h.RootLink)
	mustRun(t, "ip", "link", "set", h.RootLink, "up")
	mustRun(t, "ip", "-n", h.NS, "addr", "add", h.IP+"/30", "dev", nsLink)
	mustRun(t, "ip", "-n", h.NS, "link", "set", nsLink, "up")
	mustRun(t, "ip", "-n", h.NS, "link", "set", "lo", "up")
	// The server's advertised address (and anything else) via the root
	// namespace.
	mustRun(t, "ip", "-n", h.NS, "route", "add", "default", "via", h.RootIP)

	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("%v", err)
	}
	key := filepath.Join(h.Dir, "ssh_host_ed25519_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	config := fmt.Sprintf(`ListenAddress %s:22
HostKey %s
AuthorizedKeysFile %s/%%u
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PidFile %s/sshd.pid
LogLevel VERBOSE
SetEnv UPSCALE_SYSTEMD_ROOT=/nonexistent-upscale-systemd
`, h.IP, key, users.authorizedKeys, h.Dir)
	cfg := filepath.Join(h.Dir, "sshd_config")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatalf("%v", err)
	}
	// The host's own view of /sys/class/net (LXC looks for its bridge
	// there) without losing the cgroup hierarchies under /sys/fs/cgroup,
	// which `ip netns exec` (a whole new /sys) would hide: LXC could not
	// set containers' limits. Everything sshd starts (the agent, its
	// containers) shares this mount namespace.
	os.Mkdir(filepath.Join(h.Dir, "sys"), 0o755)
	wrapper := fmt.Sprintf(`set -e
mount -t sysfs sysfs %[1]s/sys
mount --bind %[1]s/sys/class/net /sys/class/net
mount --bind %[1]s/sys/devices/virtual/net /sys/devices/virtual/net
exec /usr/sbin/sshd -D -e -f %[2]s
`, h.Dir, cfg)
	h.sshd = exec.Command("nsenter", "--net=/run/netns/"+h.NS, "unshare", "--mount", "--propagation", "private", "sh", "-c", wrapper)
	h.sshd.Stdout, h.sshd.Stderr = h.sshdLog, h.sshdLog
	if err := h.sshd.Start(); err != nil {
		t.Fatalf("starting sshd: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(h.IP, "22"), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd of %s does not listen on %s:22: %v\n%s", h.NS, h.IP, err, h.sshdLog.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return h
}

// HostKey is the public key the host's sshd presents, as
// ssh-keyscan prints it after the host's name ("ssh-ed25519 AAAA...").
func (h *HostNet) HostKey() string {
	b, err := os.ReadFile(filepath.Join(h.Dir, "ssh_host_ed25519_key.pub"))
	if err != nil {
		h.t.Fatalf("%v", err)
	}
	f := strings.Fields(string(b))
	return f[0] + " " + f[1]
}

// Exec runs a command inside the host: its network namespace and the
// mount namespace of its sshd.
func (h *HostNet) Exec(args ...string) (string, string, int) {
	return Exec(h.Command(args...), "")
}

// Command is a command to run inside the host (see Exec).
func (h *HostNet) Command(args ...string) *exec.Cmd {
	ns := []string{"--net=/run/netns/" + h.NS}
	if h.sshd != nil && h.sshd.Process != nil && h.sshd.ProcessState == nil {
		ns = append(ns, fmt.Sprintf("--mount=/proc/%d/ns/mnt", h.sshd.Process.Pid))
	}
	return exec.Command("nsenter", append(ns, args...)...)
}

// Containers lists the LXC containers of the host's agent, sorted, as LXC
// inside the namespace sees them.
func (h *HostNet) Containers() ([]string, error) {
	lxcpath := filepath.Join(h.AgentDir, "state", "containers")
	if _, err := os.Stat(lxcpath); os.IsNotExist(err) {
		return nil, nil
	}
	out, errs, code := h.Exec("lxc-ls", "-1", "-P", lxcpath)
	if code != 0 {
		return nil, fmt.Errorf("lxc-ls in %s: %s", h.NS, errs)
	}
	return strings.Fields(out), nil
}

// Running lists the host's containers LXC reports running.
func (h *HostNet) Running() ([]string, error) {
	lxcpath := filepath.Join(h.AgentDir, "state", "containers")
	if _, err := os.Stat(lxcpath); os.IsNotExist(err) {
		return nil, nil
	}
	out, errs, code := h.Exec("lxc-ls", "-1", "--running", "-P", lxcpath)
	if code != 0 {
		return nil, fmt.Errorf("lxc-ls in %s: %s", h.NS, errs)
	}
	return strings.Fields(out), nil
}

// AgentPIDs are the agent processes running in the host (the supervisor
// loop excluded).
func (h *HostNet) AgentPIDs() []int {
	var out []int
	for _, pid := range h.pids() {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) > 0 && args[0] == filepath.Join(h.AgentDir, "upscale-agent") {
			out = append(out, pid)
		}
	}
	return out
}

// SupervisorPID is the install script's supervised loop, 0 when none.
func (h *HostNet) SupervisorPID() int {
	b, err := os.ReadFile(filepath.Join(h.AgentDir, "supervisor.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// AgentLog is what the host's agent printed.
func (h *HostNet) AgentLog() string {
	b, _ := os.ReadFile(filepath.Join(h.AgentDir, "agent.log"))
	return string(b)
}

// SSHDLog is what the host's sshd printed.
func (h *HostNet) SSHDLog() string { return h.sshdLog.String() }

// Cut loses the host as a power cut would: its agent (and the loop that
// would restart it) is killed, its containers are stopped, and its link is
// taken down.
func (h *HostNet) Cut() error {
	if pid := h.SupervisorPID(); pid > 0 {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range h.AgentPIDs() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	// The host's end: packets to it are lost, as with a dead machine (the
	// root namespace keeps its route, its end just has no carrier).
	if out, err := exec.Command("ip", "-n", h.NS, "link", "set", h.nsLink(), "down").CombinedOutput(); err != nil {
		return fmt.Errorf("link down: %v: %s", err, out)
	}
	running, err := h.Running()
	if err != nil {
		return err
	}
	lxcpath := filepath.Join(h.AgentDir, "state", "containers")
	for _, c := range running {
		if _, errs, code := h.Exec("lxc-stop", "-k", "-P", lxcpath, "-n", c); code != 0 {
			return fmt.Errorf("lxc-stop %s: %s", c, errs)
		}
	}
	return nil
}

// Restore brings the host back after Cut: its link up and its agent
// started again by a fresh supervised loop (as a reboot would), with the
// containers it had still defined (stopped).
func (h *HostNet) Restore() error {
	if out, err := exec.Command("ip", "-n", h.NS, "link", "set", h.nsLink(), "up").CombinedOutput(); err != nil {
		return fmt.Errorf("link up: %v: %s", err, out)
	}
	// Its default route went with the link.
	exec.Command("ip", "-n", h.NS, "route", "replace", "default", "via", h.RootIP).Run()
	os.Remove(filepath.Join(h.AgentDir, "supervisor.pid"))
	cmd := h.Command("setsid", "sh", filepath.Join(h.AgentDir, "supervise.sh"))
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	return nil
}

// Subnet is the container subnet the agent was installed with ("" before
// hosts add).
func (h *HostNet) Subnet() string {
	b, err := os.ReadFile(filepath.Join(h.AgentDir, "supervise.sh"))
	if err != nil {
		return ""
	}
	m := regexp.MustCompile(`'--subnet' '([0-9./]+)'`).FindSubmatch(b)
	if m == nil {
		return ""
	}
	return string(m[1])
}

func (h *HostNet) nsLink() string { return "upsh" + h.ID + "n" }

func (h *HostNet) pids() []int {
	out, err := exec.Command("ip", "netns", "pids", h.NS).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

func (h *HostNet) teardown() {
	if pid := h.SupervisorPID(); pid > 0 {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range h.AgentPIDs() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	// A killed agent holds its lxcpath's lock until it has exited: the
	// teardown below would find the directory in use.
	for deadline := time.Now().Add(10 * time.Second); len(h.AgentPIDs()) > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(h.AgentDir, "upscale-agent")); err == nil {
		sub := h.Subnet()
		if sub == "" {
			sub = "10.0.0.0/24"
		}
		teardown := func() (string, int) {
			_, errs, code := h.Exec(filepath.Join(h.AgentDir, "upscale-agent"), "--teardown", "--state", filepath.Join(h.AgentDir, "state"),
				"--bridge", "upsbr0", "--subnet", sub)
			return errs, code
		}
		errs, code := teardown()
		// The lock can outlive the agent's pid for a moment (a child
		// between fork and exec still holds the descriptor).
		for deadline := time.Now().Add(15 * time.Second); code != 0 && strings.Contains(errs, "in use by another runtime") && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
			errs, code = teardown()
		}
		if code != 0 {
			// Said once everything else is gone: a cleanup that stops
			// halfway leaves more behind.
			defer h.t.Fatalf("teardown of %s: %s", h.NS, errs)
		}
	}
	if h.sshd != nil && h.sshd.Process != nil {
		terminate(h.sshd, 5*time.Second)
	}
	// Whatever else still runs in there (sessions, monitors).
	for _, pid := range h.pids() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if sub := h.Subnet(); sub != "" {
		exec.Command("ip", "route", "del", sub).Run()
	}
	exec.Command("ip", "netns", "del", h.NS).Run()
	exec.Command("ip", "link", "del", h.RootLink).Run()
	os.RemoveAll(h.Dir)
}

// HostRow is one row of `hosts list --format json`.
type HostRow struct {
	Name       string `json:"name"`
	Address    string `json:"address"`
	State      string `json:"state"`
	Weight     int    `json:"weight"`
	Containers int    `json:"containers"`
	HostKey    string `json:"host_key"`
}

// ParseHosts reads `hosts list --format json`.
func ParseHosts(out string) ([]HostRow, error) {
	var rows []HostRow
	err := json.Unmarshal([]byte(out), &rows)
	return rows, err
}

func haltRouter(s *Server) {
	router.Halt(filepath.Join(s.Data, "router"))
}

func mustRun(t TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func randomID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
