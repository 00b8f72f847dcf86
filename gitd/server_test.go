package gitd

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/upscalehq/upscale/backend"
	"github.com/upscalehq/upscale/commands"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/store"
	"github.com/upscalehq/upscale/store/sqlstore"
)

// rig is a server on 127.0.0.1:0 whose command runner records who ran
// what; the command tree itself is tested in package commands.
type rig struct {
	addr  string
	store store.Store
	mu    sync.Mutex
	seen  []commands.Invocation
	args  [][]string
}

// newRig's Run answers "sleep D" by sleeping D silently and "env" with
// the git protocol the session carried; opts change the server's Config.
func newRig(t *testing.T, opts ...func(*Config)) *rig {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlstore.Open(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := LoadHostKey(filepath.Join(dir, "host_key"))
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{store: st}
	cfg := Config{
		HostKey: hostKey,
		Keys:    backend.NewAuthenticator(st),
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Run: func(ctx context.Context, inv commands.Invocation, args []string) int {
			r.mu.Lock()
			r.seen = append(r.seen, inv)
			r.args = append(r.args, args)
			r.mu.Unlock()
			if len(args) == 2 && args[0] == "sleep" {
				d, _ := time.ParseDuration(args[1])
				time.Sleep(d)
			}
			if len(args) == 1 && args[0] == "env" {
				v, _ := ctx.Value(gitProtocolKey).(string)
				fmt.Fprintf(inv.Stdout, "GIT_PROTOCOL=%s\n", v)
				return 0
			}
			fmt.Fprintf(inv.Stdout, "%s ran %s\n", inv.Principal.Name, strings.Join(args, " "))
			if len(args) > 0 && args[0] == "fail" {
				return 3
			}
			return 0
		},
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv := New(cfg)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeSSH(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		st.Close()
	})
	r.addr = l.Addr().String()
	return r
}

func (r *rig) addKey(t *testing.T, name string, role keys.Role, ns string) gossh.Signer {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := gossh.NewSignerFromKey(priv)
	pub := signer.PublicKey()
	if ns != "" {
		r.store.CreateNamespace(context.Background(), ns)
	}
	_, err := r.store.AddKey(context.Background(), store.Key{
		Fingerprint: gossh.FingerprintSHA256(pub), Name: name, Role: role, Namespace: ns,
		Type: pub.Type(), PublicKey: strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pub))),
	})
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

func (r *rig) dial(auth ...gossh.AuthMethod) (*gossh.Client, error) {
	return gossh.Dial("tcp", r.addr, &gossh.ClientConfig{
		User:            "upscale",
		Auth:            auth,
		HostKeyCallback: gossh.InsecureIgnoreHostKey(),
		Timeout:         5 * time.Second,
	})
}

func runCmd(t *testing.T, c *gossh.Client, cmd string, setup func(*gossh.Session)) (string, string, int) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	if setup != nil {
		setup(s)
	}
	err = s.Run(cmd)
	code := 0
	var exit *gossh.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitStatus()
	} else if err != nil {
		t.Fatalf("run %q: %v", cmd, err)
	}
	return out.String(), errb.String(), code
}

func TestKnownKeyRunsCommandsAsItsPrincipal(t *testing.T) {
	r := newRig(t)
	alice := r.addKey(t, "alice", keys.RoleNamespace, "acme")
	c, err := r.dial(gossh.PublicKeys(alice))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out, _, code := runCmd(t, c, `app create 'acme/web'`, nil)
	if code != 0 || out != "alice ran app create acme/web\n" {
		t.Fatalf("exit %d, out %q", code, out)
	}
	_, _, code = runCmd(t, c, "fail now", nil)
	if code != 3 {
		t.Fatalf("exit status not passed through: %d", code)
	}
	out, _, _ = runCmd(t, c, "", nil)
	if out != "alice ran help\n" {
		t.Fatalf("empty command: %q", out)
	}
	out, _, _ = runCmd(t, c, "git upload-pack '/acme/web.git'", nil)
	if out != "alice ran git-upload-pack /acme/web.git\n" {
		t.Fatalf("two-word git command: %q", out)
	}
	r.mu.Lock()
	inv := r.seen[0]
	r.mu.Unlock()
	_, port, _ := net.SplitHostPort(r.addr)
	// Over loopback the name the README has users type, not 127.0.0.1:
	// another spelling of the host is another host-key prompt.
	if inv.Principal.Namespace != "acme" || inv.Principal.Role != keys.RoleNamespace ||
		inv.Remote != "ssh://upscale@localhost:"+port || inv.Prog != "ssh -p "+port+" upscale@localhost" {
		t.Fatalf("invocation %+v", inv)
	}
}

func TestConfiguredSSHHostIsPrinted(t *testing.T) {
	r := newRig(t, func(c *Config) { c.SSHHost = "git.example.com" })
	alice := r.addKey(t, "alice", keys.RoleNamespace, "acme")
	c, err := r.dial(gossh.PublicKeys(alice))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	runCmd(t, c, "app list", nil)
	r.mu.Lock()
	inv := r.seen[0]
	r.mu.Unlock()
	_, port, _ := net.SplitHostPort(r.addr)
	if inv.Remote != "ssh://upscale@git.example.com:"+port || inv.Prog != "ssh -p "+port+" upscale@git.example.com" {
		t.Fatalf("invocation %+v", inv)
	}
}

func TestUnknownKeyAndNoAuthAreRefused(t *testing.T) {
	r := newRig(t)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	stranger, _ := gossh.NewSignerFromKey(priv)
	if _, err := r.dial(gossh.PublicKeys(stranger)); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("stranger's key: %v", err)
	}
	if _, err := r.dial(); err == nil {
		t.Fatal(`the "none" method was accepted`)
	}
	if _, err := r.dial(gossh.Password("upscale")); err == nil {
		t.Fatal("a password was accepted")
	}
	if len(r.seen) != 0 {
		t.Fatalf("commands ran: %v", r.args)
	}
}

func TestRemovedKeyStopsActing(t *testing.T) {
	r := newRig(t)
	alice := r.addKey(t, "alice", keys.RoleNamespace, "acme")
	c, err := r.dial(gossh.PublicKeys(alice))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := r.store.RemoveKey(context.Background(), gossh.FingerprintSHA256(alice.PublicKey())); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runCmd(t, c, "app list", nil)
	if code != 1 || out != "" || stderr != "error: this key is no longer registered\n" {
		t.Fatalf("exit %d out %q stderr %q", code, out, stderr)
	}
}

func TestPTYIsRefused(t *testing.T) {
	r := newRig(t)
	alice := r.addKey(t, "alice", keys.RoleNamespace, "acme")
	c, _ := r.dial(gossh.PublicKeys(alice))
	defer c.Close()
	out, stderr, code := runCmd(t, c, "app list", func(s *gossh.Session) {
		if err := s.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err != nil {
			t.Fatal(err)
		}
	})
	if code != 1 || out != "" || !strings.HasPrefix(stderr, "error: interactive terminals are not supported") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("exit %d out %q stderr %q", code, out, stderr)
	}
	if len(r.seen) != 0 {
		t.Fatal("command ran despite the PTY")
	}
}

func TestForwardingIsRefused(t *testing.T) {
	r := newRig(t)
	alice := r.addKey(t, "alice", keys.RoleNamespace, "acme")
	c, _ := r.dial(gossh.PublicKeys(alice))
	defer c.Close()
	if conn, err := c.Dial("tcp", r.addr); err == nil {
		conn.Close()
		t.Fatal("local port forwarding (direct-tcpip) was accepted")
	}
	if l, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
		l.Close()
		t.Fatal("remote port forwarding (tcpip-forward) was accepted")
	}
	if conn, err := c.Dial("unix", "/run/upscale.sock"); err == nil {
		conn.Close()
		t.Fatal("unix socket forwarding was accepted")
	}
	// The connection still works for commands.
	if out, _, _ := runCmd(t, c, "app list", nil); out != "alice ran app list\n" {
		t.Fatalf("out %q", out)
	}
}

func TestSubsystemIsRefused(t *testing.T) {
	r := newRig(t)
	alice := r.addKey(t, "alice", keys.RoleNamespace, "acme")
	c, _ := r.dial(gossh.PublicKeys(alice))
	defer c.Close()
	s, _ := c.NewSession()
	defer s.Close()
	if err := s.RequestSubsystem("sftp"); err == nil {
		t.Fatal("sftp subsystem accepted")
	}
}

func TestGitProtocolIsTheOnlyClientVariable(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"GIT_PROTOCOL=version=2"}, "version=2"},
		{[]string{"LD_PRELOAD=/x.so", "GIT_DIR=/etc", "GIT_PROTOCOL=version=2:x"}, ""},
		{[]string{"GIT_PROTOCOL=version=2 --upload-pack=evil"}, ""},
		{nil, ""},
	} {
		if got := gitProtocol(tc.env); got != tc.want {
			t.Errorf("gitProtocol(%q) = %q, want %q", tc.env, got, tc.want)
		}
	}
}

func TestHostKeyIsKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	a, err := LoadHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if a.PublicKey().Type() != gossh.KeyAlgoED25519 || !bytes.Equal(a.PublicKey().Marshal(), b.PublicKey().Marshal()) {
		t.Fatal("host key changed between starts or is not ed25519")
	}
}

// A key file cut short by a crash (as the in-place writes of older
// releases could leave it) does not block start-up: a new key is made and
// the torn file is kept aside. A key that is whole but unreadable still
// stops the start: that is the operator's to look at.
func TestTornHostKeyDoesNotBlockStart(t *testing.T) {
	dir := t.TempDir()
	whole, err := LoadHostKey(filepath.Join(dir, "whole"))
	if err != nil {
		t.Fatal(err)
	}
	text, _ := os.ReadFile(filepath.Join(dir, "whole"))
	for name, content := range map[string]string{"empty": "", "cut": string(text[:len(text)/2])} {
		path := filepath.Join(dir, name)
		os.WriteFile(path, []byte(content), 0o600)
		k, err := LoadHostKey(path)
		if err != nil || bytes.Equal(k.PublicKey().Marshal(), whole.PublicKey().Marshal()) {
			t.Errorf("%s: %v, want a new key", name, err)
			continue
		}
		again, err := LoadHostKey(path)
		if err != nil || !bytes.Equal(again.PublicKey().Marshal(), k.PublicKey().Marshal()) {
			t.Errorf("%s: the new key was not kept: %v", name, err)
		}
		aside, _ := filepath.Glob(path + ".torn-*")
		if len(aside) != 1 {
			t.Errorf("%s: torn copies kept aside: %v, want one", name, aside)
		}
	}
	other := filepath.Join(dir, "other")
	os.WriteFile(other, []byte("not a key at all\n"), 0o600)
	if _, err := LoadHostKey(other); err == nil {
		t.Error("a file that is not a key was replaced")
	}
	// The key is written whole under its name, 0600, and nothing else is
	// left in the directory.
	fi, err := os.Stat(filepath.Join(dir, "whole"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the key file: %v, mode %o", err, fi.Mode().Perm())
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

// Processes starting at once end up with one key between them.
func TestHostKeyConcurrentStarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	keys := make(chan []byte, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := LoadHostKey(path)
			if err != nil {
				t.Error(err)
				return
			}
			keys <- s.PublicKey().Marshal()
		}()
	}
	wg.Wait()
	close(keys)
	var first []byte
	for k := range keys {
		if first == nil {
			first = k
		} else if !bytes.Equal(k, first) {
			t.Fatal("two processes got different host keys")
		}
	}
}
