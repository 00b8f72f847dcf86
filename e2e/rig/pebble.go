package rig

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Pebble is Let's Encrypt's test CA, as built from the version go.mod
// pins (`go tool pebble`), running until the test ends.
type Pebble struct {
	Directory string // ACME directory URL, for --acme-directory
	CARoot    string // file: what Pebble's own HTTPS listener is signed by, for --acme-ca-root
	mgmt      string
	client    *http.Client
	cmd       *exec.Cmd
	out       *syncBuffer
}

// StartPebble runs Pebble; it validates HTTP-01 on httpPort (the router's
// HTTP port) of the addresses dnsAddr's server gives for the names, and
// issues certificates that last validity.
func StartPebble(t TB, httpPort int, dnsAddr string, validity time.Duration) *Pebble {
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
	listen, mgmt := FreePort(t), FreePort(t)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", listen),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", mgmt),
		"certificate":             filepath.Join(certs, "localhost", "cert.pem"),
		"privateKey":              filepath.Join(certs, "localhost", "key.pem"),
		"httpPort":                httpPort, "tlsPort": FreePort(t),
		"ocspResponderURL": "", "externalAccountBindingRequired": false,
		"domainBlocklist": []string{"blocked.example.com"},
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
		mgmt: fmt.Sprintf("https://localhost:%d", mgmt), out: &syncBuffer{}}
	root, err := os.ReadFile(p.CARoot)
	if err != nil {
		t.Fatalf("%v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(root)
	p.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	p.cmd = exec.Command(bin, "-config", cfgFile, "-dnsserver", dnsAddr)
	p.cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
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
			t.Fatalf("pebble did not answer at %s: %v\n%s", p.Directory, err, p.out.String())
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

// Root writes the root of the certificates Pebble issues (new each run)
// to a file and returns its path, for curl --cacert.
func (p *Pebble) Root(t TB) string {
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
	f := filepath.Join(filepath.Dir(p.cmd.Args[2]), "issuer-root.pem")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatalf("%v", err)
	}
	return f
}
