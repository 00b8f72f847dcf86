package hostops

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/upscalehq/upscale/bus"
	"github.com/upscalehq/upscale/store/sqlstore"
)

type fakeCredentials struct{}

func (fakeCredentials) AgentCredentials(host string) (bus.Credentials, error) {
	return bus.Credentials{URL: "nats://192.0.2.1:4222", Agent: host, User: host, Password: "secret"}, nil
}
func (fakeCredentials) RemoveAgent(string) error { return nil }

func newKey(t *testing.T) (gossh.Signer, []byte) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return s, pem.EncodeToMemory(block)
}

// sshServer answers SSH handshakes with hostKey and lets nobody in: enough
// to see which key a client was shown and whether it went on.
func sshServer(t *testing.T, hostKey gossh.Signer) string {
	t.Helper()
	cfg := &gossh.ServerConfig{PublicKeyCallback: func(gossh.ConnMetadata, gossh.PublicKey) (*gossh.Permissions, error) {
		return nil, os.ErrPermission
	}}
	cfg.AddHostKey(hostKey)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				gossh.NewServerConn(c, cfg)
			}()
		}
	}()
	return l.Addr().String()
}

// hosts add pins the host's key before it records or installs anything:
// without a key it is refused with the way to get one; a host presenting
// another key is refused with both fingerprints; trust on first use
// prints the fingerprint it pinned. Each refusal leaves no host behind.
func TestAddPinsTheHostKey(t *testing.T) {
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	agent := filepath.Join(t.TempDir(), "upscale-agent")
	os.WriteFile(agent, []byte("#!/bin/sh\n"), 0o755)
	o := &Ops{Store: st, Bus: fakeCredentials{}, Agent: agent, Subnets: netip.MustParsePrefix("10.77.0.0/16")}

	hostKey, _ := newKey(t)
	other, _ := newKey(t)
	_, identity := newKey(t)
	addr := sshServer(t, hostKey)
	fp := func(s gossh.Signer) string { return "ssh-ed25519 " + gossh.FingerprintSHA256(s.PublicKey()) }
	known := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(known, []byte("[127.0.0.1]:"+addr[strings.LastIndex(addr, ":")+1:]+" "+string(gossh.MarshalAuthorizedKey(other.PublicKey()))), 0o600)
	empty := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(empty, []byte("# nothing\n"), 0o600)

	for _, c := range []struct {
		name string
		r    AddRequest
		want string // the error; "" only when the handshake went on
		out  string // a progress line
	}{
		{"no key", AddRequest{}, "hosts add needs the host's SSH key: pass --host-key 'ssh-ed25519 AAAA...' (ssh-keyscan -t ed25519 127.0.0.1 prints it; check it out of band), --known-hosts FILE, or --trust-host-key to accept the key it presents now", ""},
		{"two ways", AddRequest{HostKeys: []gossh.PublicKey{hostKey.PublicKey()}, TrustHostKey: true}, "give the host's key one way: --host-key, --known-hosts or --trust-host-key", ""},
		{"another key", AddRequest{HostKeys: []gossh.PublicKey{other.PublicKey()}},
			"verifying the host key of " + addr + ": it is " + fp(hostKey) + ", expected " + fp(other), ""},
		{"another key in known_hosts", AddRequest{KnownHosts: known},
			"verifying the host key of " + addr + ": it is " + fp(hostKey) + ", expected " + fp(other), ""},
		{"no entry in known_hosts", AddRequest{KnownHosts: empty}, `"` + empty + `" has no key for [127.0.0.1]:` + addr[strings.LastIndex(addr, ":")+1:], ""},
		// The key matched: the handshake went on to authentication,
		// which this server refuses.
		{"the right key", AddRequest{HostKeys: []gossh.PublicKey{other.PublicKey(), hostKey.PublicKey()}},
			"authenticating as root on " + addr + ": the key was refused", ""},
		{"trust on first use", AddRequest{TrustHostKey: true}, "authenticating as root on " + addr + ": the key was refused",
			"-----> Host key of 127.0.0.1: " + fp(hostKey) + " (trusted on first use, not verified; pinned from now on)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := c.r
			r.Address, r.User, r.Identity, r.Name, r.Weight = addr, "root", identity, "h1", 1
			var out []string
			err := o.Add(ctx, r, func(l string) { out = append(out, l) })
			if err == nil || err.Error() != c.want {
				t.Errorf("Add: %v\nwant %s", err, c.want)
			}
			if c.out != "" && !strings.Contains(strings.Join(out, "\n")+"\n", c.out+"\n") {
				t.Errorf("progress lacks %q:\n%s", c.out, strings.Join(out, "\n"))
			}
			if hosts, err := st.ListHosts(ctx); err != nil || len(hosts) != 0 {
				t.Errorf("hosts after a failed add: %+v, %v; want none", hosts, err)
			}
		})
	}
}
