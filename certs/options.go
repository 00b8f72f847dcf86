package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/upscalehq/upscale/store"
)

// Mode is where certificates come from (`--tls`).
type Mode string

const (
	ModeOff      Mode = "off"      // plain HTTP only
	ModeACME     Mode = "acme"     // an ACME CA (Let's Encrypt by default); the internal CA for names no CA signs
	ModeInternal Mode = "internal" // the internal CA for every name
	ModeManual   Mode = "manual"   // only certificates users bring (`certs add`)
)

// ParseMode reads --tls.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeOff, ModeACME, ModeInternal, ModeManual:
		return m, nil
	}
	return "", fmt.Errorf("--tls %q: want off, acme, internal or manual", s)
}

// DefaultMode is the mode for a platform domain when --tls is not given:
// internal for a domain no public CA signs (upscale.localhost, x.test),
// acme otherwise.
func DefaultMode(domain string) Mode {
	if privateName(domain) {
		return ModeInternal
	}
	return ModeACME
}

// privateName says whether name is under a top-level domain reserved for
// local or test use (RFC 2606, RFC 6761, RFC 6762), which no public CA
// signs: such names always get the internal CA's certificates.
func privateName(name string) bool {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	for _, tld := range []string{"localhost", "test", "invalid", "example", "local", "internal", "home.arpa"} {
		if name == tld || strings.HasSuffix(name, "."+tld) {
			return true
		}
	}
	return false
}

// LetsEncrypt is the default ACME directory.
const LetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// Options configure an Engine. Store and, for ACME, nothing else is
// required; every other field has a default.
type Options struct {
	Mode  Mode
	Store store.CertStore
	Log   *slog.Logger // nil: discard

	// Directory is the ACME directory URL (--acme-directory); Email the
	// account's contact (--acme-email); CARootFile a PEM file of roots to
	// trust for talking to the CA (--acme-ca-root), for a test CA.
	Directory  string
	Email      string
	CARootFile string
	// HTTPChallengeAddr is host:port where the server serves Handler,
	// which the router forwards /.well-known/acme-challenge/ to. certmagic
	// answers challenges there itself should nothing listen on it.
	HTTPChallengeAddr string
	// DNS solves DNS-01 for wildcards ("*.NS.DOMAIN"); nil: no wildcards.
	DNS *RFC2136
	// WeeklyLimit is the CA's certificates per registered domain per week
	// (Let's Encrypt: 50, the default); the engine spends at most half.
	WeeklyLimit int

	// RootFile is where the internal CA's root certificate is written;
	// InternalLifetime how long its certificates last (default 7 days).
	RootFile         string
	InternalLifetime time.Duration

	// OnCert is told of every certificate obtained, renewed, brought, or
	// found in the store at start, to install it. It is called from the
	// engine's goroutines, one name at a time per name; it should return
	// quickly.
	OnCert func(Cert)

	// CheckInterval is how often a live certificate is looked at again
	// (default 10 minutes); RetryBase and RetryMax bound the backoff after
	// failures (default 1 minute, doubling up to 6 hours); Workers is how
	// many names are worked on at once (default 4); LockLease the storage
	// locks' lease (default 1 minute).
	CheckInterval, RetryBase, RetryMax time.Duration
	Workers                            int
	LockLease                          time.Duration
	// RenewalRatio is the share of a certificate's lifetime left when it
	// is renewed (default 1/3).
	RenewalRatio float64
}

func (o *Options) defaults() {
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Directory == "" {
		o.Directory = LetsEncrypt
	}
	if o.WeeklyLimit <= 0 {
		o.WeeklyLimit = 50
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = 10 * time.Minute
	}
	if o.RetryBase <= 0 {
		o.RetryBase = time.Minute
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 6 * time.Hour
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.RenewalRatio <= 0 || o.RenewalRatio >= 1 {
		o.RenewalRatio = 1.0 / 3
	}
	if o.OnCert == nil {
		o.OnCert = func(Cert) {}
	}
}

// check says what is wrong with the options, in one line.
func (o *Options) check() error {
	if _, err := ParseMode(string(o.Mode)); err != nil {
		return err
	}
	if o.Store == nil {
		return errors.New("certificates: no store")
	}
	u, err := url.Parse(o.Directory)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("--acme-directory %q: not an http(s) URL", o.Directory)
	}
	if o.Email != "" && (!strings.Contains(o.Email, "@") || strings.ContainsAny(o.Email, " \t\n<>")) {
		return fmt.Errorf("--acme-email %q: not an email address", o.Email)
	}
	if o.HTTPChallengeAddr != "" {
		if _, port, err := net.SplitHostPort(o.HTTPChallengeAddr); err != nil {
			return fmt.Errorf("HTTP challenge address %q: %v", o.HTTPChallengeAddr, err)
		} else if _, err := strconv.Atoi(port); err != nil {
			return fmt.Errorf("HTTP challenge address %q: port %q is not a number", o.HTTPChallengeAddr, port)
		}
	}
	if o.DNS != nil {
		if err := o.DNS.Check(); err != nil {
			return err
		}
	}
	return nil
}

// trustedRoots reads --acme-ca-root; nil when none is given, for the
// system's roots.
func (o *Options) trustedRoots() (*x509.CertPool, error) {
	if o.CARootFile == "" {
		return nil, nil
	}
	data, err := os.ReadFile(o.CARootFile)
	if err != nil {
		return nil, fmt.Errorf("--acme-ca-root: %v", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("--acme-ca-root %s: no PEM certificate in it", o.CARootFile)
	}
	return pool, nil
}

// PrivateKeyPEM is a private key in PEM. It prints and logs as
// "[private key]", whatever the verb, so that handing a Cert to a logger
// or an error never shows the key.
type PrivateKeyPEM []byte

const redacted = "[private key]"

func (PrivateKeyPEM) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }
func (PrivateKeyPEM) LogValue() slog.Value       { return slog.StringValue(redacted) }

// Cert is a certificate ready to install: what OnCert gets.
type Cert struct {
	Name     string // as asked for: "web.acme.example.com", "*.acme.example.com"
	Issuer   string // "acme", "internal" or "manual"
	ChainPEM []byte // leaf first
	KeyPEM   PrivateKeyPEM
	NotAfter time.Time
	Renewal  bool // replaces a certificate delivered before for Name
}

// LogValue keeps a Cert in a log line to what identifies it.
func (c Cert) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", c.Name), slog.String("issuer", c.Issuer),
		slog.Time("not_after", c.NotAfter), slog.Bool("renewal", c.Renewal))
}
