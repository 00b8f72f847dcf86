// The pending certificate: what a name with no certificate of its own is
// served, so that it is never another app's.

package router

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	"github.com/upscalehq/upscale/certbundle"
)

// PendingSubject is the pending certificate's common name: what a browser
// shows for a name whose certificate is not issued yet.
const PendingSubject = "Upscale: certificate pending"

// pendingLife is long enough to outlive any issuance, short enough that
// nobody mistakes it for a real certificate; it is made again within
// pendingRenew of its end.
const (
	pendingLife  = 365 * 24 * time.Hour
	pendingRenew = 30 * 24 * time.Hour
)

// newPendingPEM makes a self-signed certificate with no name at all (no
// SAN: it matches no SNI) and its key.
func newPendingPEM(now time.Time) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: PendingSubject, Organization: []string{"Upscale"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(pendingLife),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pending certificate: %w", err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})...), nil
}

// pendingFresh reports whether data is a pending certificate good for a
// while yet.
func pendingFresh(data []byte, now time.Time) bool {
	leaf, err := certbundle.FirstCert(data)
	return err == nil && leaf.Subject.CommonName == PendingSubject && now.Add(pendingRenew).Before(leaf.NotAfter)
}
