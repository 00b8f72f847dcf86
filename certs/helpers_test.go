package certs

import (
	"crypto"
	"testing"
	"time"

	"github.com/upscalehq/upscale/certbundle/certbundletest"
)

// testCA is a CA made for a test, with the internal CA's code.
func testCA(t testing.TB) *InternalCA {
	t.Helper()
	ca, err := newCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca.lifetime = 24 * time.Hour
	return ca
}

var (
	newKey = certbundletest.NewKey
	keyPEM = certbundletest.KeyPEM
	join   = certbundletest.Join
)

// leafPEM is a certificate for names signed by ca, valid from nb to na.
func leafPEM(t testing.TB, ca *InternalCA, key crypto.Signer, names []string, nb, na time.Time) []byte {
	return certbundletest.Leaf(t, ca.root, ca.key, key, names, nb, na)
}
