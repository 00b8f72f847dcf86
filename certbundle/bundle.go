// Package certbundle reads a certificate chain and its private key from
// PEM, as a user brings them or a CA issues them, and says whether they
// can serve a name: the one parser of certificate bundles, for the
// certificate engine (certs) and the router alike.
package certbundle

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Limits on a bundle brought by a user: far above any real chain, low
// enough that a paste of something else is refused before it costs much.
const (
	maxBundleBytes = 256 << 10
	maxChainCerts  = 8
)

// Bundle is a certificate chain and its private key, as brought by a user
// (`certs add`) or as issued.
type Bundle struct {
	Chain    []*x509.Certificate // leaf first
	Key      crypto.Signer
	ChainPEM []byte // the chain re-encoded: only CERTIFICATE blocks, leaf first
	KeyPEM   []byte // PKCS #8
}

// Leaf is the certificate served.
func (b *Bundle) Leaf() *x509.Certificate { return b.Chain[0] }

// Parse reads PEM text holding a certificate chain, leaf first, and
// one unencrypted private key (PKCS #8, PKCS #1 or SEC 1), in any order:
// the --cert and --key files one after the other, or both on stdin. Text
// around the blocks is ignored, as openssl writes it. Each problem is one
// line naming what is wrong; it checks the pieces fit together but not the
// name or the dates: that is Check.
func Parse(data []byte) (*Bundle, error) {
	if len(data) > maxBundleBytes {
		return nil, fmt.Errorf("certificate and key: %d bytes, more than the %d a chain and key take", len(data), maxBundleBytes)
	}
	var b Bundle
	var keyBlocks int
	var chain bytes.Buffer
	rest := data
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch {
		case block.Type == "CERTIFICATE":
			if len(b.Chain) == maxChainCerts {
				return nil, fmt.Errorf("certificate: more than %d certificates in the chain", maxChainCerts)
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate %d: not a valid X.509 certificate: %s", len(b.Chain)+1, oneLineErr(err))
			}
			b.Chain = append(b.Chain, c)
			pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes})
		case block.Type == "EC PARAMETERS":
			// openssl ecparam -genkey writes them before the key; the key
			// names its curve itself.
		case block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] != "":
			return nil, errors.New("key: encrypted private keys are not supported: decrypt it first (openssl pkey -in KEY -out PLAIN)")
		case strings.HasSuffix(block.Type, "PRIVATE KEY"):
			keyBlocks++
			if keyBlocks > 1 {
				return nil, errors.New("key: more than one private key given")
			}
			k, err := parsePrivateKey(block.Bytes)
			if err != nil {
				return nil, err
			}
			b.Key = k
		default:
			return nil, fmt.Errorf("PEM block %d is a %q: want CERTIFICATE blocks and one PRIVATE KEY", n, block.Type)
		}
	}
	switch {
	case len(b.Chain) == 0 && b.Key == nil:
		return nil, errors.New("certificate and key: no PEM certificate or private key found")
	case len(b.Chain) == 0:
		return nil, errors.New("certificate: no PEM CERTIFICATE block found")
	case b.Key == nil:
		return nil, errors.New("key: no PEM private key found (a file that is not a key, or only certificates given)")
	}
	if !publicKeysEqual(b.Chain[0].PublicKey, b.Key.Public()) {
		return nil, errors.New("key: does not match the certificate (the certificate was made for another key)")
	}
	for i := 0; i+1 < len(b.Chain); i++ {
		if err := b.Chain[i].CheckSignatureFrom(b.Chain[i+1]); err != nil {
			return nil, fmt.Errorf("certificate %d is not signed by certificate %d: give the chain leaf first, each certificate followed by its issuer", i+1, i+2)
		}
	}
	der, err := x509.MarshalPKCS8PrivateKey(b.Key)
	if err != nil {
		return nil, fmt.Errorf("key: %s", oneLineErr(err))
	}
	b.KeyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	b.ChainPEM = chain.Bytes()
	return &b, nil
}

func parsePrivateKey(der []byte) (crypto.Signer, error) {
	var key any
	var err error
	if key, err = x509.ParsePKCS8PrivateKey(der); err != nil {
		if key, err = x509.ParsePKCS1PrivateKey(der); err != nil {
			if key, err = x509.ParseECPrivateKey(der); err != nil {
				return nil, errors.New("key: not a valid private key (PKCS #8, PKCS #1 or SEC 1)")
			}
		}
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("key: an RSA key of %d bits; at least 2048 needed", k.N.BitLen())
		}
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("key: %T keys are not supported", key)
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// Check says whether the bundle can serve name at now: the leaf is valid
// then and covers name (a wildcard leaf covers one label, RFC 6125).
func (b *Bundle) Check(name string, now time.Time) error {
	leaf := b.Leaf()
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Errorf("certificate: expired on %s", leaf.NotAfter.UTC().Format(time.DateOnly))
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("certificate: not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return Covers(leaf, name)
}

// Covers says whether leaf is valid for name, in one line when it is not.
func Covers(leaf *x509.Certificate, name string) error {
	// A wildcard name is covered by the same wildcard only: VerifyHostname
	// would take "*.a.com" as the literal label "*".
	if strings.HasPrefix(name, "*.") {
		for _, n := range leaf.DNSNames {
			if strings.EqualFold(n, name) {
				return nil
			}
		}
	} else if leaf.VerifyHostname(name) == nil {
		return nil
	}
	names := leaf.DNSNames
	if len(names) == 0 {
		names = []string{"no DNS name"}
	}
	if len(names) > 4 {
		names = append(names[:4:4], fmt.Sprintf("%d more", len(leaf.DNSNames)-4))
	}
	return fmt.Errorf("certificate: made for %s, not %s", strings.Join(names, ", "), name)
}

// FirstCert reads the first certificate of PEM text (a file the router
// wrote: chain, then key).
func FirstCert(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return nil, errors.New("no certificate")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

func oneLineErr(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
