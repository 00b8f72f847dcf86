package bus

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/upscalehq/upscale/atomicfile"
	"github.com/upscalehq/upscale/names"
)

const (
	// caLifetime is long because rotating the CA means new credentials on
	// every host; the CA key never leaves the server, so there is no
	// revocation story a shorter life would buy.
	caLifetime = 20 * 365 * 24 * time.Hour
	// serverCertLifetime bounds how long a leaked server key lets someone
	// impersonate the bus. Renewal needs no agent involvement, so it can
	// be short.
	serverCertLifetime = 365 * 24 * time.Hour
	// renewBefore leaves a month for a server that cannot write its state
	// directory to be noticed (a warning per handshake) before agents fail.
	renewBefore = 30 * 24 * time.Hour
	// backdate absorbs clock skew between the server and agent hosts: a
	// freshly issued certificate must not be "not yet valid" on a host
	// whose clock is a little behind.
	backdate = 24 * time.Hour
)

// certManager owns the bus's private CA and the server certificate it
// signs. The CA is created once and kept: its certificate is pinned in
// every credentials file. The server certificate is derived state,
// reissued whenever its names or its remaining life no longer fit.
type certManager struct {
	dir   string
	log   *slog.Logger
	now   func() time.Time
	names sanSet

	ca    *x509.Certificate
	caKey crypto.Signer
	caPEM string

	mu   sync.Mutex
	cert *tls.Certificate // Leaf is set

	renewMu sync.Mutex
	retryAt time.Time // after a failed renewal
}

func (m *certManager) caPath() string        { return filepath.Join(m.dir, "ca.pem") }
func (m *certManager) caKeyPath() string     { return filepath.Join(m.dir, "ca.key") }
func (m *certManager) serverPath() string    { return filepath.Join(m.dir, "server.pem") }
func (m *certManager) serverKeyPath() string { return filepath.Join(m.dir, "server.key") }
func (m *certManager) renewAt(c *tls.Certificate) time.Time {
	return c.Leaf.NotAfter.Add(-renewBefore)
}

// loadCerts reads (or creates) the CA and a server certificate valid for
// names in dir.
func loadCerts(dir string, want sanSet, log *slog.Logger, now func() time.Time) (*certManager, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	m := &certManager{dir: dir, log: log, now: now, names: want}
	if err := m.loadCA(); err != nil {
		return nil, err
	}
	cert, why := m.loadServerCert()
	if why != "" {
		if err := m.issue(why); err != nil {
			return nil, err
		}
		return m, nil
	}
	m.cert = cert
	return m, nil
}

// loadCA reads the CA, creating it only when its certificate does not
// exist. A certificate that is there but unreadable stops the start:
// replacing it would silently lock out every agent.
func (m *certManager) loadCA() error {
	certPEM, err := os.ReadFile(m.caPath())
	if errors.Is(err, fs.ErrNotExist) {
		// ca.key alone is what a crash during the first start leaves (the
		// key is written first); no credentials can carry a CA whose
		// certificate was never written, so starting over is safe.
		return m.createCA()
	}
	if err != nil {
		return fmt.Errorf("bus: CA: %w", err)
	}
	ca, err := parseCertPEM(string(certPEM))
	if err != nil {
		return fmt.Errorf("bus: CA %s: %w", m.caPath(), err)
	}
	key, err := readKey(m.caKeyPath())
	if err != nil {
		return fmt.Errorf("bus: CA key: %w", err)
	}
	if !publicKeysEqual(key.Public(), ca.PublicKey) {
		return fmt.Errorf("bus: CA key %s does not match %s", m.caKeyPath(), m.caPath())
	}
	if !ca.IsCA {
		return fmt.Errorf("bus: CA %s is not a CA certificate", m.caPath())
	}
	if m.now().After(ca.NotAfter) {
		return fmt.Errorf("bus: CA %s expired on %s; move %s away to create a new one (every agent then needs new credentials)",
			m.caPath(), ca.NotAfter.Format(time.DateOnly), m.dir)
	}
	m.ca, m.caKey, m.caPEM = ca, key, string(certPEM)
	return nil
}

func (m *certManager) createCA() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("bus: CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	now := m.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// The serial in the name tells apart the CAs of different
		// installations when an operator looks at a credentials file.
		Subject:               pkix.Name{CommonName: "upscale bus CA " + serial.Text(16)[:8], Organization: []string{"upscale"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true, // signs server certificates, never another CA
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("bus: CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("bus: CA certificate: %w", err)
	}
	keyPEM, err := marshalKey(key)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// Key first: a certificate on disk means its key is there too.
	if err := atomicfile.Write(m.caKeyPath(), keyPEM, 0o600); err != nil {
		return fmt.Errorf("bus: store CA key: %w", err)
	}
	if err := atomicfile.Write(m.caPath(), certPEM, 0o600); err != nil {
		return fmt.Errorf("bus: store CA: %w", err)
	}
	m.ca, m.caKey, m.caPEM = ca, key, string(certPEM)
	m.log.Info("bus CA created", "path", m.caPath(), "subject", ca.Subject.CommonName)
	return nil
}

// loadServerCert returns the stored server certificate, or why it has to
// be issued again. Everything about it is recoverable, so a damaged or
// mismatched file is a reason to reissue, not an error.
func (m *certManager) loadServerCert() (*tls.Certificate, string) {
	certPEM, err := os.ReadFile(m.serverPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "none yet"
	}
	if err != nil {
		return nil, err.Error()
	}
	keyPEM, err := os.ReadFile(m.serverKeyPath())
	if err != nil {
		return nil, err.Error()
	}
	cert, err := keyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err.Error()
	}
	if err := cert.Leaf.CheckSignatureFrom(m.ca); err != nil {
		return nil, "signed by another CA"
	}
	if got := certNames(cert.Leaf); !slices.Equal(got, m.names.list()) {
		return nil, fmt.Sprintf("names changed from %s to %s", strings.Join(got, ","), m.names)
	}
	if !m.now().Before(m.renewAt(&cert)) {
		return nil, "expires on " + cert.Leaf.NotAfter.Format(time.DateOnly)
	}
	return &cert, ""
}

// issue signs a new server certificate with a new key and stores both.
func (m *certManager) issue(why string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("bus: server TLS key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	now := m.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "upscale bus", Organization: []string{"upscale"}},
		NotBefore:    now.Add(-backdate),
		// Never past the CA: clients would refuse the chain anyway, and
		// renewal would not notice why.
		NotAfter:    minTime(now.Add(serverCertLifetime), m.ca.NotAfter),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    m.names.dns,
		IPAddresses: m.names.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, m.ca, &key.PublicKey, m.caKey)
	if err != nil {
		return fmt.Errorf("bus: server certificate: %w", err)
	}
	keyPEM, err := marshalKey(key)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	cert, err := keyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("bus: server certificate: %w", err)
	}
	// A crash between the two writes leaves a pair that does not match,
	// which the next start reissues.
	if err := atomicfile.Write(m.serverKeyPath(), keyPEM, 0o600); err != nil {
		return fmt.Errorf("bus: store server TLS key: %w", err)
	}
	if err := atomicfile.Write(m.serverPath(), certPEM, 0o600); err != nil {
		return fmt.Errorf("bus: store server certificate: %w", err)
	}
	m.mu.Lock()
	m.cert = &cert
	m.mu.Unlock()
	m.log.Info("bus server certificate issued", "why", why, "names", m.names.String(),
		"expires", cert.Leaf.NotAfter.Format(time.DateOnly))
	return nil
}

// getCertificate serves the current certificate, renewing it on the way
// when it nears expiry: a server that runs for a year without a restart
// must not lock its agents out.
func (m *certManager) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert := m.currentCert()
	now := m.now()
	if now.Before(m.renewAt(cert)) {
		return cert, nil
	}
	// One renewal for a burst of handshakes, and after a failure (a full
	// disk) not one per handshake: the old certificate is still good for
	// weeks.
	m.renewMu.Lock()
	defer m.renewMu.Unlock()
	if m.currentCert() == cert && !now.Before(m.retryAt) {
		if err := m.issue("expires on " + cert.Leaf.NotAfter.Format(time.DateOnly)); err != nil {
			m.retryAt = now.Add(time.Hour)
			m.log.Warn("bus server certificate not renewed", "err", err, "expires", cert.Leaf.NotAfter)
		}
	}
	return m.currentCert(), nil
}

func (m *certManager) currentCert() *tls.Certificate {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cert
}

// serverTLSConfig is built once per Embedded and reused by every reload:
// nats-server compares TLS configurations by deep equality, and a fresh one
// would read as a change.
func (m *certManager) serverTLSConfig() *tls.Config {
	return &tls.Config{
		// Every client of this server is this package's Connect.
		MinVersion:     tls.VersionTLS13,
		GetCertificate: m.getCertificate,
	}
}

// sanSet is the normalised set of names a server certificate is valid for.
type sanSet struct {
	ips []net.IP
	dns []string
}

func (s sanSet) list() []string {
	out := make([]string, 0, len(s.ips)+len(s.dns))
	for _, ip := range s.ips {
		out = append(out, ip.String())
	}
	out = append(out, s.dns...)
	slices.Sort(out)
	return out
}

func (s sanSet) String() string { return strings.Join(s.list(), ",") }

// certNames lists the names c is valid for in the form of sanSet.list.
func certNames(c *x509.Certificate) []string {
	out := make([]string, 0, len(c.IPAddresses)+len(c.DNSNames))
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	out = append(out, c.DNSNames...)
	slices.Sort(out)
	return out
}

// newSANSet validates and normalises names: IP addresses (v4 or v6,
// without brackets) and DNS names. Wildcards are refused: agents dial one
// address, and a wildcard would stretch the certificate to hosts the
// operator did not name.
func newSANSet(names []string) (sanSet, error) {
	var s sanSet
	seen := map[string]bool{}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			if !seen[ip.String()] {
				seen[ip.String()] = true
				s.ips = append(s.ips, ip)
			}
			continue
		}
		name := strings.ToLower(n)
		if err := checkDNSName(name); err != nil {
			return sanSet{}, err
		}
		if !seen[name] {
			seen[name] = true
			s.dns = append(s.dns, name)
		}
	}
	slices.SortFunc(s.ips, func(a, b net.IP) int { return bytes.Compare(a, b) })
	slices.Sort(s.dns)
	return s, nil
}

func checkDNSName(name string) error {
	bad := func(why string) error { return fmt.Errorf("TLS name %s: %s", names.Quote(name), why) }
	if name == "" {
		return bad("empty")
	}
	if len(name) > 253 {
		return bad("longer than 253 characters")
	}
	if _, _, err := net.SplitHostPort(name); err == nil {
		return bad("a name or an IP address, without a port")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return bad("not a DNS name (empty or long label)")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return bad("not a DNS name (label starts or ends with '-')")
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return bad("not a DNS name or an IP address")
			}
		}
	}
	return nil
}

// parseCertPEM accepts exactly one PEM CERTIFICATE block, nothing around
// it but white space and no headers, so a credentials file holds what an
// operator sees in it.
func parseCertPEM(s string) (*x509.Certificate, error) {
	t := strings.TrimSpace(s)
	if !strings.HasPrefix(t, "-----BEGIN CERTIFICATE-----") {
		return nil, errors.New("not a PEM certificate")
	}
	block, rest := pem.Decode([]byte(t))
	if block == nil || block.Type != "CERTIFICATE" || len(block.Headers) != 0 {
		return nil, errors.New("not a PEM certificate")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("data after the PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("bad certificate: %w", err)
	}
	return cert, nil
}

// keyPair is tls.X509KeyPair with Leaf always set, which expiry checks
// read on every handshake (GODEBUG x509keypairleaf=0 would leave it nil).
func keyPair(certPEM, keyPEM []byte) (tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, err
		}
	}
	return cert, nil
}

func marshalKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("bus: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func readKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not a PEM private key", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an ECDSA key", path)
	}
	return ec, nil
}

func publicKeysEqual(a crypto.PublicKey, b any) bool {
	ka, ok := a.(*ecdsa.PublicKey)
	return ok && ka.Equal(b)
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("bus: certificate serial: %w", err)
	}
	// A serial that happens to start with zero bits would print shorter
	// than 8 hex digits in the CA's name.
	return serial.SetBit(serial, 127, 1), nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
