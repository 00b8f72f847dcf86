package certs

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/upscalehq/upscale/atomicfile"
	"github.com/upscalehq/upscale/certbundle"
)

// The internal CA's root lives in the store, so that every server on it
// signs with the same root and a browser that trusts it once keeps
// trusting it.
const (
	caRootKey    = "upscale/internal-ca/root.crt"
	caRootKeyKey = "upscale/internal-ca/root.key"
	caLock       = "upscale_internal_ca"

	// IssuerInternal is the internal CA's issuer key and the Issuer shown
	// in a name's status.
	IssuerInternal = "internal"

	caRootLifetime = 10 * 365 * 24 * time.Hour
)

// InternalCA is a local certificate authority, like Caddy's internal
// issuer: for names no public CA signs (.localhost, .test) and for
// `--tls internal`. Its root is made on first start; clients trust it by
// its root certificate file.
type InternalCA struct {
	root     *x509.Certificate
	key      crypto.Signer
	rootPEM  []byte
	lifetime time.Duration // of the certificates it issues
}

var _ certmagic.Issuer = (*InternalCA)(nil)

// LoadOrCreateCA reads the CA from storage, or makes it there when there
// is none; two servers starting at once make one, under a lock. lifetime is
// how long its certificates last (0: 7 days).
func LoadOrCreateCA(ctx context.Context, s *Storage, lifetime time.Duration) (*InternalCA, error) {
	if lifetime <= 0 {
		lifetime = 7 * 24 * time.Hour
	}
	ca, err := loadCA(ctx, s)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return withLifetime(ca, lifetime), err
	}
	if err := s.Lock(ctx, caLock); err != nil {
		return nil, fmt.Errorf("internal CA: %w", err)
	}
	defer s.Unlock(context.WithoutCancel(ctx), caLock)
	if ca, err := loadCA(ctx, s); !errors.Is(err, fs.ErrNotExist) {
		return withLifetime(ca, lifetime), err
	}
	ca, err = newCA(time.Now())
	if err != nil {
		return nil, fmt.Errorf("internal CA: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return nil, fmt.Errorf("internal CA: %w", err)
	}
	// The key first: a root without its key would be loaded and fail.
	if err := s.Store(ctx, caRootKeyKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return nil, fmt.Errorf("internal CA: %w", err)
	}
	if err := s.Store(ctx, caRootKey, ca.rootPEM); err != nil {
		return nil, fmt.Errorf("internal CA: %w", err)
	}
	return withLifetime(ca, lifetime), nil
}

func withLifetime(ca *InternalCA, d time.Duration) *InternalCA {
	if ca != nil {
		ca.lifetime = d
	}
	return ca
}

func loadCA(ctx context.Context, s *Storage) (*InternalCA, error) {
	rootPEM, err := s.Load(ctx, caRootKey)
	if err != nil {
		return nil, err
	}
	keyPEM, err := s.Load(ctx, caRootKeyKey)
	if err != nil {
		return nil, fmt.Errorf("internal CA: its root is stored without its key: %w", err)
	}
	b, err := certbundle.Parse(append(append(rootPEM, '\n'), keyPEM...))
	if err != nil {
		return nil, fmt.Errorf("internal CA in the store: %w", err)
	}
	return &InternalCA{root: b.Leaf(), key: b.Key, rootPEM: b.ChainPEM}, nil
}

func newCA(now time.Time) (*InternalCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Upscale Local Root " + rand.Text()[:8], Organization: []string{"Upscale"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caRootLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &InternalCA{root: root, key: key, rootPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// RootPEM is the root certificate clients trust.
func (ca *InternalCA) RootPEM() []byte { return ca.rootPEM }

// WriteRoot writes the root certificate to path (mode 0644: it is public),
// for the server to print and curl --cacert to read.
func (ca *InternalCA) WriteRoot(path string) error {
	if err := atomicfile.Write(path, ca.rootPEM, 0o644); err != nil {
		return fmt.Errorf("internal CA root: %w", err)
	}
	return nil
}

func (ca *InternalCA) IssuerKey() string { return IssuerInternal }

// Issue signs the CSR's names for the CA's lifetime (never past the
// root's), for serving only.
func (ca *InternalCA) Issue(_ context.Context, csr *x509.CertificateRequest) (*certmagic.IssuedCertificate, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("internal CA: bad CSR signature: %w", err)
	}
	if len(csr.DNSNames) == 0 {
		return nil, errors.New("internal CA: the request names no host")
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: csr.DNSNames[0]},
		DNSNames:     csr.DNSNames,
		NotBefore:    now.Add(-5 * time.Minute), // clocks of clients a little behind
		NotAfter:     earlier(now.Add(ca.lifetime), ca.root.NotAfter),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if _, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment // RSA key exchange
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, csr.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("internal CA: %w", err)
	}
	return &certmagic.IssuedCertificate{Certificate: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
