package certbundle

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/certbundle/certbundletest"
)

var (
	newTestCA = certbundletest.NewCA
	newKey    = certbundletest.NewKey
	keyPEM    = certbundletest.KeyPEM
	join      = certbundletest.Join
)

// leafPEM is a certificate for names signed by ca, valid from nb to na.
func leafPEM(t testing.TB, ca *certbundletest.CA, key crypto.Signer, names []string, nb, na time.Time) []byte {
	return ca.Leaf(t, key, names, nb, na)
}

func TestBundle(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	key, otherKey := newKey(t), newKey(t)
	now := time.Now()
	day := 24 * time.Hour
	leaf := leafPEM(t, ca, key, []string{"www.example.com", "example.com"}, now.Add(-day), now.Add(60*day))
	wildcard := leafPEM(t, ca, key, []string{"*.acme.example.com"}, now.Add(-day), now.Add(60*day))
	expired := leafPEM(t, ca, key, []string{"www.example.com"}, now.Add(-90*day), now.Add(-day))
	future := leafPEM(t, ca, key, []string{"www.example.com"}, now.Add(day), now.Add(90*day))
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)})
	ecKey, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecKey})

	for _, tc := range []struct {
		name string
		data []byte
		host string
		want string // "" for no error
	}{
		{"leaf and key", join(leaf, keyPEM(t, key)), "www.example.com", ""},
		{"key first, chain with root, openssl text around", join([]byte("Bag Attributes\n"), keyPEM(t, key), leaf, ca.RootPEM(), []byte("trailing")), "example.com", ""},
		{"SEC 1 key", join(leaf, sec1), "www.example.com", ""},
		{"wildcard covers one label", join(wildcard, keyPEM(t, key)), "web.acme.example.com", ""},
		{"wildcard name itself", join(wildcard, keyPEM(t, key)), "*.acme.example.com", ""},
		{"wildcard does not cover two labels", join(wildcard, keyPEM(t, key)), "a.web.acme.example.com", "certificate: made for *.acme.example.com, not a.web.acme.example.com"},
		{"wrong name", join(leaf, keyPEM(t, key)), "shop.example.org", "certificate: made for www.example.com, example.com, not shop.example.org"},
		{"key that does not match", join(leaf, keyPEM(t, otherKey)), "www.example.com", "key: does not match the certificate"},
		{"expired", join(expired, keyPEM(t, key)), "www.example.com", "certificate: expired on " + now.Add(-day).UTC().Format(time.DateOnly)},
		{"not yet valid", join(future, keyPEM(t, key)), "www.example.com", "certificate: not valid before"},
		{"no key", leaf, "www.example.com", "key: no PEM private key found"},
		{"key file that is not a key", join(leaf, []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE key@host\n")), "www.example.com", "key: no PEM private key found"},
		{"a key block that holds no key", join(leaf, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")), "www.example.com", "key: not a valid private key"},
		{"two keys", join(leaf, keyPEM(t, key), keyPEM(t, key)), "www.example.com", "key: more than one private key given"},
		{"encrypted key", join(leaf, []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")), "www.example.com", "key: encrypted private keys are not supported"},
		{"weak RSA key", join(leaf, rsa1024), "www.example.com", "key: an RSA key of 1024 bits"},
		{"no certificate", keyPEM(t, key), "www.example.com", "certificate: no PEM CERTIFICATE block found"},
		{"nothing", []byte("hello\n"), "www.example.com", "no PEM certificate or private key found"},
		{"certificate block that holds no certificate", join([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), keyPEM(t, key)), "www.example.com", "certificate 1: not a valid X.509 certificate"},
		{"chain out of order", join(other.RootPEM(), leaf, keyPEM(t, key)), "www.example.com", "key: does not match"},
		{"intermediate from another CA", join(leaf, other.RootPEM(), keyPEM(t, key)), "www.example.com", "certificate 1 is not signed by certificate 2"},
		{"another kind of block", join(leaf, keyPEM(t, key), []byte("-----BEGIN DH PARAMETERS-----\nAAAA\n-----END DH PARAMETERS-----\n")), "www.example.com", `PEM block 3 is a "DH PARAMETERS"`},
		{"too big", bytes.Repeat([]byte("x"), maxBundleBytes+1), "www.example.com", "more than the"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Parse(tc.data)
			if err == nil {
				err = b.Check(tc.host, now)
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("error %q", err)
			case tc.want == "":
				if !bytes.Contains(b.ChainPEM, leafBody(t, tc.data)) || strings.Count(string(b.KeyPEM), "BEGIN PRIVATE KEY") != 1 {
					t.Errorf("ChainPEM or KeyPEM not as given:\n%s", b.ChainPEM)
				}
			case err == nil:
				t.Fatalf("no error, want %q", tc.want)
			case !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n"):
				t.Errorf("error %q: want one line with %q", err, tc.want)
			}
		})
	}
}

// leafBody is the first certificate's PEM in data.
func leafBody(t *testing.T, data []byte) []byte {
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			t.Fatal("no certificate")
		} else if b.Type == "CERTIFICATE" {
			return pem.EncodeToMemory(b)
		}
	}
}

func FuzzParse(f *testing.F) {
	ca := newTestCA(f)
	key := newKey(f)
	now := time.Now()
	f.Add(join(leafPEM(f, ca, key, []string{"www.example.com"}, now.Add(-time.Hour), now.Add(time.Hour)), keyPEM(f, key), ca.RootPEM()), "www.example.com")
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), "*.a.b")
	f.Fuzz(func(t *testing.T, data []byte, host string) {
		b, err := Parse(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error on several lines: %q", err)
			}
			return
		}
		if err := b.Check(host, time.Now()); err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("error on several lines: %q", err)
		}
		// What it keeps parses again to the same chain and key.
		again, err := Parse(join(b.ChainPEM, b.KeyPEM))
		if err != nil || len(again.Chain) != len(b.Chain) || !again.Key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(b.Key.Public()) {
			t.Fatalf("re-parsing the kept chain and key: %v", err)
		}
	})
}
