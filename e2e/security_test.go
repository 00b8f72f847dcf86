package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// CVE-2024-45337: OpenSSH offers the admin's public key (the server says
// it would accept it), cannot sign with it (it only has the public half),
// and authenticates with the member's key instead. The session must act
// as the member.
func TestOfferedKeyIsNotTheProvenKeyRegression(t *testing.T) {
	w := newWorld(t)
	fake := filepath.Join(t.TempDir(), "admin-public-only")
	if err := os.WriteFile(fake, []byte(w.admin.key.Public+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(fake+".pub", []byte(w.admin.key.Public+"\n"), 0o600)
	cmd := append(w.srv.SSHCommand(rig.Key{Path: fake}), "-i", w.member.key.Path, "-v", "upscale@127.0.0.1", "hosts", "list")
	out, errs, code := rig.Exec(execCmd(cmd), "")
	if !strings.Contains(errs, "Server accepts key: "+fake) {
		t.Fatalf("the admin key was not offered first, so this test proves nothing:\n%s", errs)
	}
	if code != 1 || out != "" || !strings.Contains(errs, `error: not allowed: "hosts list" needs an admin key`) {
		t.Fatalf("acted with the offered admin key: exit %d out %q\n%s", code, out, errs)
	}
}

// Nothing from the client's environment reaches git: if GIT_TRACE or
// LD_PRELOAD got through, git or the dynamic loader would say so on the
// push's stderr.
func TestClientEnvDoesNotReachGitRegression(t *testing.T) {
	w := newWorld(t)
	dir := rig.Repo(t, helloApp(t, "secure", "runtime: python\n"))
	key := w.member.key
	sshCmd := strings.Join(append(w.srv.SSHCommand(key),
		"-o", "'SetEnv=LD_PRELOAD=/nonexistent/evil.so GIT_TRACE=1 GIT_TRACE_PACKET=1 GIT_DIR=/tmp GIT_EXEC_PATH=/nonexistent'"), " ")
	cmd := execCmd([]string{"git", "push", w.srv.Remote("acme/web"), "master"})
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_SSH_COMMAND="+sshCmd)
	_, errs, code := rig.Exec(cmd, "")
	if code != 0 {
		t.Fatalf("push failed: %s", errs)
	}
	for _, leak := range []string{"trace:", "packet:", "ld.so", "evil.so"} {
		if strings.Contains(errs, leak) {
			t.Fatalf("client env reached git (%q in output):\n%s", leak, errs)
		}
	}
	if !strings.Contains(errs, "=====> Application deployed") {
		t.Fatalf("push output:\n%s", errs)
	}
}

func TestPTYAndForwardingAreRefused(t *testing.T) {
	w := newWorld(t)
	key := w.member.key
	for _, tc := range []struct {
		name string
		opts []string
		args []string
		code int
		want string
	}{
		{"pty", []string{"-tt"}, []string{"app", "list"}, 1, "error: interactive terminals are not supported"},
		{"stdio forwarding", []string{"-W", "127.0.0.1:22"}, nil, 255, "stdio forwarding failed"},
		{"remote forwarding", []string{"-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:80"}, nil, 255, "remote port forwarding failed"},
		{"sftp subsystem", []string{"-s"}, []string{"sftp"}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := append(append(w.srv.SSHCommand(key), tc.opts...), "upscale@127.0.0.1")
			cmd = append(cmd, tc.args...)
			out, errs, code := rig.Exec(execCmd(cmd), "")
			if tc.name == "sftp subsystem" {
				if code == 0 {
					t.Fatalf("sftp subsystem accepted: %q %q", out, errs)
				}
				return
			}
			// A PTY folds stderr into the terminal stream.
			all := out + errs
			if code != tc.code || !strings.Contains(all, tc.want) || strings.Count(strings.TrimSpace(all), "\n") != 0 {
				t.Fatalf("exit %d (want %d), output %q (want one line with %q)", code, tc.code, all, tc.want)
			}
		})
	}
	// Nothing was run or changed.
	if out := mustSSH(t, w.srv, w.admin.key, "", "app", "list"); strings.Count(out, "\n") != 4 {
		t.Fatalf("apps changed: %q", out)
	}
}

func TestBadCommandInput(t *testing.T) {
	w := newWorld(t)
	before := mustSSH(t, w.srv, w.admin.key, "", "namespace", "list") + mustSSH(t, w.srv, w.admin.key, "", "keys", "list")
	pwned := filepath.Join(os.TempDir(), "upscale-e2e-pwned")
	os.Remove(pwned)
	dup := w.member.key.Public
	for _, tc := range []struct {
		cmd  string
		code int
		want string
	}{
		{"namespace create Test", 1, `invalid namespace name "Test"`},
		{"namespace create 'a/../b'", 1, `invalid namespace name "a/../b"`},
		{"namespace create 'x;touch " + pwned + "'", 1, `invalid namespace name "x;touch`},
		{"namespace create x;touch " + pwned, 2, "takes at most one NAME"},
		{"namespace create " + strings.Repeat("n", 200), 1, "invalid namespace name"},
		{"namespace create ''", 1, "namespace name is empty"},
		{"app create 'acme/../globex/x'", 1, "invalid application name"},
		{"app info acme", 1, "want NAMESPACE/APP"},
		{"frobnicate", 2, `error: unknown command "frobnicate"`},
		{"app list --bogus", 2, "unknown flag: --bogus"},
		{"namespace create 'unterminated", 2, "unterminated quote"},
		{"keys add --namespace acme --name k --public 'not a key'", 1, "key text is not an SSH public key"},
		{"keys add --namespace acme --name k2 --public '" + dup + "'", 1, "is already registered"},
		{"keys add --namespace acme --name alice --public '" + rig.NewKey(t, "n").Public + "'", 1, "a key named alice already exists"},
		{"git-upload-pack '/var/lib/upscale/repos/acme/web.git'", 1, "invalid repository path"},
	} {
		out, errs, code := w.srv.SSH(w.admin.key, "", tc.cmd)
		if code != tc.code || out != "" || !strings.HasPrefix(errs, "error: ") || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d (want %d), out %q, err %q (want one line with %q)", tc.cmd, code, tc.code, out, errs, tc.want)
		}
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Fatal("a command line ran a shell command")
	}
	after := mustSSH(t, w.srv, w.admin.key, "", "namespace", "list") + mustSSH(t, w.srv, w.admin.key, "", "keys", "list")
	if after != before {
		t.Fatalf("bad input changed state:\n%s\n---\n%s", before, after)
	}
}

// Repository paths that try to leave the repository tree.
func TestRepoPathsAreConfined(t *testing.T) {
	w := newWorld(t)
	dir := rig.Repo(t, helloApp(t, "secure", "runtime: python\n"))
	base := strings.TrimSuffix(w.srv.Remote("x/y"), "/x/y.git")
	for _, path := range []string{
		"/acme/../globex/web.git",
		"/../../etc/passwd",
		"//acme/web.git",
		"/acme//web.git",
		"/acme/web/extra.git",
		w.srv.Data + "/repos/acme/web.git",
		"/acme/web.git/../../globex/web.git",
	} {
		_, errs, code := w.srv.Git(w.admin.key, dir, "push", base+path, "master")
		if code == 0 || !(strings.Contains(errs, "invalid repository path") || strings.Contains(errs, "not found")) {
			t.Errorf("push to %s: exit %d\n%s", path, code, errs)
		}
	}
	// Nothing landed anywhere.
	for _, app := range []string{"acme/web", "globex/web"} {
		if out := mustSSH(t, w.srv, w.admin.key, "", "app", "info", app, "--format", "json"); strings.Contains(out, "last_push") {
			t.Errorf("%s received a push: %s", app, out)
		}
	}
}

// 300 silent connections to the SSH port were all held for the 10-minute
// idle timeout: they are closed once the login grace time is over, and the
// real OpenSSH client gets in meanwhile.
func TestSilentSSHConnectionsRegression(t *testing.T) {
	srv := rig.Start(t, bin, "--ssh-login-grace", "2s")
	admin := rig.NewKey(t, "admin")
	mustLocal(t, srv, "keys", "add", "--admin", "--name", "admin", "--public", admin.Public)
	var silent []net.Conn
	for range 300 {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", srv.Port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	// Once the server has greeted or closed each one: a client that came
	// earlier would be among the oldest the flood behind it pushes out.
	for i, c := range silent {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection %d: the server neither greeted nor closed it (%q)", i, line)
		}
		c.SetReadDeadline(time.Time{})
	}
	if out, errs, code := srv.SSH(admin, "", "namespace", "list"); code != 0 {
		t.Fatalf("ssh next to 300 silent connections: exit %d %q %s", code, out, errs)
	}
	for i, c := range silent {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("silent connection %d still open after 30 s (grace 2 s)", i)
		}
	}
}
