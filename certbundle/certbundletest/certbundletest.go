// Package certbundletest makes keys, CAs and certificates for tests of
// the code that parses, checks and serves them.
package certbundletest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a CA made for a test: a root that signs leaves directly.
type CA struct {
	Root *x509.Certificate
	Key  crypto.Signer
}

// NewCA makes a root valid from an hour ago for a day.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key := NewKey(t)
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "Upscale test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Root: root, Key: key}
}

// RootPEM is the CA's root as PEM.
func (ca *CA) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Root.Raw})
}

// Leaf is a certificate for names with key's public half, signed by ca,
// valid from nb to na, as PEM.
func (ca *CA) Leaf(t testing.TB, key crypto.Signer, names []string, nb, na time.Time) []byte {
	t.Helper()
	return Leaf(t, ca.Root, ca.Key, key, names, nb, na)
}

// Leaf is a certificate for names with key's public half, signed by
// issuer with issuerKey, valid from nb to na, as PEM.
func Leaf(t testing.TB, issuer *x509.Certificate, issuerKey, key crypto.Signer, names []string, nb, na time.Time) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: nb, NotAfter: na, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// NewKey is a fresh P-256 key.
func NewKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// KeyPEM is key as a PKCS#8 PEM block.
func KeyPEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// Join puts PEM parts one after another, as a bundle file has them.
func Join(parts ...[]byte) []byte { return bytes.Join(parts, []byte("\n")) }

var serials atomic.Int64

func serial() *big.Int { return big.NewInt(serials.Add(1)) }
