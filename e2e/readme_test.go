package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/upscalehq/upscale/e2e/rig"
)

// The README's quick start, run as written: its shell blocks after
// make run, in a shell in a checkout, against a server of the rig. Only
// what ties it to this machine changes: the ports (2222, 80), the data
// directory, the user's first key (made beforehand, as "if you have no
// key yet" allows) and /tmp/hello.
func TestReadmeQuickStart(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(string(readme), "## Quick start")
	end := strings.Index(string(readme), "## Commands")
	if start < 0 || end < start {
		t.Fatal("README has no quick start")
	}
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(readme)[start:end], -1)
	if len(blocks) != 3 || !strings.Contains(blocks[0][1], "make run") {
		t.Fatalf("the quick start's shell blocks changed: %d of them", len(blocks))
	}
	// HTTPS on, as make run has it, on a port of the test's own.
	httpsPort := rig.FreePort(t)
	srv := rig.StartWithAgent(t, bin, "--https", fmt.Sprintf("127.0.0.1:%d", httpsPort))
	home, work := t.TempDir(), t.TempDir()
	examples, _ := filepath.Abs("../examples")
	// A checkout: bin/ and examples/ where the README expects them.
	for name, target := range map[string]string{"bin": filepath.Dir(bin), "examples": examples} {
		if err := os.Symlink(target, filepath.Join(work, name)); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(home, ".ssh", "id_ed25519")).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	// The user accepts the host key once, at the first prompt. ssh finds
	// ~/.ssh through the password database, not $HOME: it is told.
	sshConfig := filepath.Join(home, ".ssh", "config")
	os.WriteFile(sshConfig, fmt.Appendf(nil, "Host localhost\n  StrictHostKeyChecking accept-new\n  BatchMode yes\n  LogLevel ERROR\n"+
		"  IdentityFile %[1]s/.ssh/id_ed25519\n  IdentitiesOnly yes\n  UserKnownHostsFile %[1]s/.ssh/known_hosts\n", home), 0o600)

	script := blocks[1][1] + blocks[2][1]
	script = regexp.MustCompile(`(?m)^ssh-keygen -t ed25519 .*# if you have no key yet\n`).ReplaceAllString(script, "")
	script = strings.ReplaceAll(script, "bin/upscale ", fmt.Sprintf("bin/upscale --data %s --config %s ", srv.Data, filepath.Join(filepath.Dir(srv.Data), "none.yaml")))
	script = strings.ReplaceAll(script, "2222", fmt.Sprint(srv.Port))
	script = strings.ReplaceAll(script, "/tmp/hello", filepath.Join(work, "hello"))
	script = strings.ReplaceAll(script, "/var/lib/upscale/", srv.Data+"/")
	// curl resolves *.localhost to this machine, on ports 80 and 443.
	script = fmt.Sprintf("set -eu\ncurl() { command curl -sS --connect-to :80:127.0.0.1:%d --connect-to :443:127.0.0.1:%d \"$@\"; }\n"+
		"ssh() { command ssh -F %s \"$@\"; }\nexport GIT_SSH_COMMAND='ssh -F %[3]s'\n", srv.HTTPPort, httpsPort, sshConfig) + script
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = work
	cmd.Env = append(rig.GitEnv(work), "HOME="+home)
	out, errs, code := rig.Exec(cmd, "")
	if code != 0 || !strings.HasSuffix(out, "Hello from Python on Upscale!\n") {
		t.Fatalf("the quick start as written: exit %d\nscript:\n%s\nstdout:\n%s\nstderr:\n%s", code, script, out, errs)
	}
	// The server names itself as the user reached it: localhost.
	if !strings.Contains(out, fmt.Sprintf("git remote add upscale ssh://upscale@localhost:%d/test/hello.git", srv.Port)) {
		t.Errorf("app create did not print the remote the README adds:\n%s", out)
	}
}
