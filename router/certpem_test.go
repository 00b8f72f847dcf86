package router

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/certbundle"
)

// testCA issues certificates the way a CA would, for tests: clients
// trust pool.
type testCA struct {
	t    *testing.T
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Upscale test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{t: t, cert: cert, key: key, pool: pool}
}

var serials = big.NewInt(100)

// issue returns a leaf for names and its key, as PEM: the chain (leaf,
// then the CA) and the key, the way an ACME client stores them.
func (ca *testCA) issue(notAfter time.Time, names ...string) []byte {
	ca.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		ca.t.Fatal(err)
	}
	return ca.sign(&key.PublicKey, key, notAfter, names...)
}

func (ca *testCA) sign(pub, key any, notAfter time.Time, names ...string) []byte {
	ca.t.Helper()
	serials.Add(serials, big.NewInt(1))
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).Set(serials),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		ca.t.Fatal(err)
	}
	var keyPEM []byte
	switch k := key.(type) {
	case *rsa.PrivateKey:
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	case *ecdsa.PrivateKey:
		b, _ := x509.MarshalECPrivateKey(k)
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: b})
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})...)
	return append(out, keyPEM...)
}

func TestParseCertPEM(t *testing.T) {
	ca := newTestCA(t)
	day := time.Now().Add(24 * time.Hour)
	good := ca.issue(day, "web.acme.test", "*.acme.test")
	leaf, out, err := parseCertPEM([]string{"web.acme.test", "*.acme.test", "api.acme.test"}, good, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != "web.acme.test" || strings.Count(string(out), "BEGIN CERTIFICATE") != 2 ||
		!strings.Contains(string(out), "BEGIN PRIVATE KEY") || strings.Contains(string(out), "\n\n") {
		t.Errorf("normalized PEM:\n%s", out)
	}
	// What an operator brings: an RSA key, the key before the chain.
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	withRSA := ca.sign(&rsaKey.PublicKey, rsaKey, day, "www.example.com")
	i := strings.Index(string(withRSA), "-----BEGIN RSA")
	if _, _, err := parseCertPEM([]string{"www.example.com"}, slices.Concat(withRSA[i:], withRSA[:i]), time.Now()); err != nil {
		t.Errorf("RSA key first: %v", err)
	}

	other := ca.issue(day, "web.acme.test")
	keyOf := func(p []byte) []byte { return p[strings.Index(string(p), "-----BEGIN EC"):] }
	chainOf := func(p []byte) []byte { return p[:strings.Index(string(p), "-----BEGIN EC")] }
	for name, c := range map[string]struct {
		names []string
		pem   []byte
		want  string
	}{
		"key of another certificate": {[]string{"web.acme.test"}, slices.Concat(chainOf(good), keyOf(other)), "key: does not match the certificate"},
		"no key":                     {[]string{"web.acme.test"}, chainOf(good), "key: no PEM private key found"},
		"not a key":                  {[]string{"web.acme.test"}, slices.Concat(chainOf(good), []byte("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")), "key: not a valid private key"},
		"no certificate":             {[]string{"web.acme.test"}, keyOf(good), "certificate: no PEM CERTIFICATE block"},
		"not PEM":                    {[]string{"web.acme.test"}, []byte("hello"), "no PEM certificate or private key found"},
		"wrong name":                 {[]string{"blog.example.org"}, good, "certificate: made for web.acme.test, *.acme.test, not blog.example.org"},
		"wildcard not in it":         {[]string{"*.other.test"}, good, "not *.other.test"},
		"two labels down":            {[]string{"a.web.acme.test"}, good, "not a.web.acme.test"},
		"expired":                    {[]string{"web.acme.test"}, ca.issue(time.Now().Add(-time.Hour), "web.acme.test"), "expired on"},
		"too large":                  {[]string{"web.acme.test"}, ca.issue(day, manyNames(250)...), "HAProxy's runtime API takes at most"},
	} {
		_, _, err := parseCertPEM(c.names, c.pem, time.Now())
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line with %q", name, err, c.want)
		}
	}
}

// manyNames is web.acme.test and n-1 long names: a certificate too large
// for HAProxy's runtime API.
func manyNames(n int) []string {
	out := []string{"web.acme.test"}
	for i := 1; i < n; i++ {
		out = append(out, fmt.Sprintf("name-%03d-%s.acme.test", i, strings.Repeat("x", 40)))
	}
	return out
}

func TestCheckCertNames(t *testing.T) {
	for _, ok := range [][]string{{"web.acme.test"}, {"*.acme.test", "acme.test"}, {"localhost"}} {
		if err := checkCertNames(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range [][]string{nil, {""}, {"*"}, {"*.test"}, {"*.*.acme.test"}, {"a.*.test"}, {"Web.acme.test"},
		{"web.acme.test extra"}, {"web.acme.test\nshow"}, {"a.test", "a.test"}, {"../x"}, {"a_b.test"}} {
		if err := checkCertNames(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if got := certID("*.acme.test"); got != "_.acme.test" {
		t.Errorf("certID(*.acme.test) = %q", got)
	}
}

func TestPendingCert(t *testing.T) {
	now := time.Now()
	p, err := newPendingPEM(now)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := certbundle.FirstCert(p)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != PendingSubject || len(leaf.DNSNames) != 0 || leaf.VerifyHostname("web.acme.test") == nil {
		t.Errorf("pending certificate: subject %q, names %q", leaf.Subject, leaf.DNSNames)
	}
	if !pendingFresh(p, now) || pendingFresh(p, now.Add(pendingLife-pendingRenew/2)) || pendingFresh([]byte("junk"), now) {
		t.Error("pendingFresh does not tell a fresh pending certificate from a stale one")
	}
	ca := newTestCA(t)
	if pendingFresh(ca.issue(now.Add(pendingLife), "web.acme.test"), now) {
		t.Error("another certificate taken for the pending one")
	}
}

// Certificates and keys come from outside (an operator's files, an ACME
// CA): whatever they hold, parseCertPEM answers with an error or with PEM
// that is only certificates and a key.
func FuzzParseCertPEM(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		_, out, err := parseCertPEM([]string{"web.acme.test"}, []byte(s), time.Unix(1800000000, 0))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error of several lines: %q", err)
			}
			return
		}
		for rest := out; len(rest) > 0; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil || (b.Type != "CERTIFICATE" && b.Type != "PRIVATE KEY") {
				t.Fatalf("output holds more than certificates and a key: %q", out)
			}
		}
	})
}

// The fuzz seeds are real certificates; they expire, so the target runs
// at a fixed time. This keeps the seed files honest.
func TestFuzzCertSeedsParse(t *testing.T) {
	data := []byte(seed(t, "FuzzParseCertPEM", "ecdsa-chain"))
	if _, _, err := parseCertPEM([]string{"web.acme.test"}, data, time.Unix(1800000000, 0)); err != nil {
		t.Errorf("seed ecdsa-chain: %v", err)
	}
	if _, err := os.Stat("testdata/fuzz/FuzzParseCertPEM/rsa-key-first"); err != nil {
		t.Error(err)
	}
}
