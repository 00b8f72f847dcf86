package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
	"github.com/upscalehq/upscale/repos"
)

// sshd is the baseline: OpenSSH's own server, which runs git-receive-pack
// the way most self-hosted git does, on a loopback port of its own. The
// git helpers below serve both sides alike.
type sshd struct {
	port int
	key  rig.Key
}

func startSSHD(t *tb, key rig.Key) *sshd {
	const bin = "/usr/sbin/sshd"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: apt-get install -y openssh-server (make test-deps)", bin)
	}
	// sshd refuses to start without its privilege separation directory,
	// which only the packaged service normally creates at boot.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("creating /run/sshd: %v", err)
	}
	dir := t.TempDir()
	hostKey := filepath.Join(dir, "host_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	auth := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(auth, []byte(key.Public+"\n"), 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	s := &sshd{port: rig.FreePort(t), key: key}
	config := filepath.Join(dir, "sshd_config")
	// Only what a key login needs: no PAM, no DNS, no motd, so the
	// baseline is OpenSSH at its leanest rather than a distro's defaults.
	// SetEnv gives git the environment Upscale gives it, and keeps root's
	// shell startup files (which may run anything, e.g. pyenv init) out of
	// every session: sshd runs commands with the login shell.
	conf := fmt.Sprintf(`ListenAddress 127.0.0.1
Port %d
HostKey %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
UseDNS no
PrintMotd no
PidFile none
AcceptEnv GIT_PROTOCOL
SetEnv HOME=/nonexistent GIT_CONFIG_NOSYSTEM=1
`, s.port, hostKey, auth)
	if err := os.WriteFile(config, []byte(conf), 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	var log bytes.Buffer
	cmd := exec.Command(bin, "-D", "-e", "-f", config, "-p", fmt.Sprint(s.port))
	cmd.Stdout, cmd.Stderr = &log, &log
	// Its own process group, so that stopping it also ends any session
	// child still running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting sshd: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port))
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("sshd exited:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen within 10 s:\n%s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

// SSHCommand is the ssh command line that reaches the sshd as root: the
// same client options the rig uses for Upscale.
func (s *sshd) SSHCommand(opts ...string) []string {
	args := []string{"ssh", "-p", fmt.Sprint(s.port), "-i", s.key.Path,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"}
	return append(args, opts...)
}

// Remote is the git URL of the bare repository at path.
func (s *sshd) Remote(path string) string {
	return fmt.Sprintf("ssh://root@127.0.0.1:%d%s", s.port, path)
}

// gitEnv is the environment of every git the bench runs: the same for
// both sides, and independent of the user's git configuration.
func gitEnv(dir string, ssh []string) []string {
	env := append(os.Environ(),
		"GIT_AUTHOR_NAME=Bench", "GIT_AUTHOR_EMAIL=bench@example.com",
		"GIT_COMMITTER_NAME=Bench", "GIT_COMMITTER_EMAIL=bench@example.com",
		"GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	if len(ssh) > 0 {
		env = append(env, "GIT_SSH_COMMAND="+strings.Join(ssh, " "))
	}
	return env
}

// push times one `git push` of master from the work tree dir.
func push(t *tb, dir string, ssh []string, remote string) time.Duration {
	return pushRef(t, dir, ssh, remote, "master")
}

// sideBranch is where the push and overhead benchmarks push master: not
// the deploy branch, so that Upscale keeps the push (hooks, policy, push
// record) without building and running it.
const sideBranch = "master:refs/heads/bench"

// pushRef times one `git push` of refspec from the work tree dir.
func pushRef(t *tb, dir string, ssh []string, remote, refspec string) time.Duration {
	cmd := exec.Command("git", "push", "-q", remote, refspec)
	cmd.Dir, cmd.Env = dir, gitEnv(dir, ssh)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		t.Fatalf("git push %s: %v\n%s", remote, err, out)
	}
	return d
}

// git runs an untimed git command in dir.
func git(t *tb, dir string, args ...string) {
	cmd := exec.Command("git", args...)
	cmd.Dir, cmd.Env = dir, gitEnv(dir, nil)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// bareRepo makes a fresh baseline repository configured like Upscale's
// (repos.Config, no hooks) and returns its path.
func bareRepo(t *tb) string {
	p := filepath.Join(t.TempDir(), "repo.git")
	git(t, "", "init", "-q", "--bare", "--initial-branch=master", p)
	for _, kv := range repos.Config {
		git(t, p, "config", kv[0], kv[1])
	}
	if err := os.RemoveAll(filepath.Join(p, "hooks")); err != nil {
		t.Fatalf("%v", err)
	}
	return p
}
