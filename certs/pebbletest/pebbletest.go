// Package pebbletest runs Pebble, Let's Encrypt's test CA, as built from
// the version go.mod pins (`go tool pebble`), for the certificate engine's
// tests, the e2e tests and the benchmarks.
package pebbletest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// TB is what Start needs of a test (testing.TB and the e2e rig's TB fit).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// Options say how Pebble validates and what it issues.
type Options struct {
	// HTTPPort is where Pebble validates HTTP-01 challenges (on the
	// addresses DNS gives for the names).
	HTTPPort int
	// DNS is the HOST:PORT of the resolver Pebble asks.
	DNS string
	// Validity is how long its certificates last; 0 is 90 days.
	Validity time.Duration
	// Blocked names are refused by policy.
	Blocked []string
}

// Pebble is one running Pebble; it stops when the test ends.
type Pebble struct {
	Directory string // ACME directory URL, for --acme-directory
	CARoot    string // file: what Pebble's own HTTPS listener is signed by, for --acme-ca-root
	dir       string
	mgmt      string
	client    *http.Client
	cmd       *exec.Cmd
	out       buffer
}

// Start runs Pebble and waits until its directory answers.
func Start(t TB, o Options) *Pebble {
	t.Helper()
	out, err := exec.Command("go", "tool", "-n", "pebble").Output()
	if err != nil {
		t.Fatalf("go tool -n pebble (go.mod's tool): %v", err)
	}
	bin := strings.TrimSpace(string(out))
	out, err = exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/letsencrypt/pebble/v2").Output()
	if err != nil {
		t.Fatalf("pebble's module directory: %v", err)
	}
	// Pebble's own test certificates, for its HTTPS listener.
	certs := filepath.Join(strings.TrimSpace(string(out)), "test", "certs")
	dir, err := os.MkdirTemp("", "upscale-e2e-pebble-")
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	validity := o.Validity
	if validity == 0 {
		validity = 90 * 24 * time.Hour
	}
	listen, mgmt := freePort(t), freePort(t)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", listen),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", mgmt),
		"certificate":             filepath.Join(certs, "localhost", "cert.pem"),
		"privateKey":              filepath.Join(certs, "localhost", "key.pem"),
		"httpPort":                o.HTTPPort, "tlsPort": freePort(t),
		"ocspResponderURL": "", "externalAccountBindingRequired": false,
		"domainBlocklist": append([]string{"blocked.invalid"}, o.Blocked...),
		"retryAfter":      map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":    "ecdsa",
		"profiles":        map[string]any{"default": map[string]any{"description": "test", "validityPeriod": int(validity / time.Second)}},
	}}
	data, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgFile, data, 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	p := &Pebble{Directory: fmt.Sprintf("https://localhost:%d/dir", listen), CARoot: filepath.Join(certs, "pebble.minica.pem"),
		dir: dir, mgmt: fmt.Sprintf("https://localhost:%d", mgmt)}
	root, err := os.ReadFile(p.CARoot)
	if err != nil {
		t.Fatalf("%v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(root)
	p.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	p.cmd = exec.Command(bin, "-config", cfgFile, "-dnsserver", o.DNS)
	p.cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(p.Stop)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := p.client.Get(p.Directory)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble did not answer at %s: %v\n%s", p.Directory, err, p.Log())
		}
	}
}

// Log is what Pebble said.
func (p *Pebble) Log() string { return p.out.String() }

// Stop stops Pebble, as a CA that is down.
func (p *Pebble) Stop() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	}
}

// RootPEM is the root of the certificates Pebble issues (new each run).
func (p *Pebble) RootPEM(t TB) []byte {
	t.Helper()
	resp, err := p.client.Get(p.mgmt + "/roots/0")
	if err != nil {
		t.Fatalf("pebble root: %v", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble root: %d %v", resp.StatusCode, err)
	}
	return data
}

// RootFile writes RootPEM to a file and returns its path, for curl --cacert.
func (p *Pebble) RootFile(t TB) string {
	t.Helper()
	f := filepath.Join(p.dir, "issuer-root.pem")
	if err := os.WriteFile(f, p.RootPEM(t), 0o644); err != nil {
		t.Fatalf("%v", err)
	}
	return f
}

func freePort(t TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// buffer is Pebble's output, written by its process and read by tests.
type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
