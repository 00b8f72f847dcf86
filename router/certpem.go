// Certificates handed to the router: names and PEM checked before they
// reach a file or HAProxy.

package router

import (
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/upscalehq/upscale/certbundle"
	"github.com/upscalehq/upscale/names"
)

const (
	// maxPEM bounds the chain and key as written: HAProxy's CLI takes a
	// payload of one buffer (tune.bufsize, 16 kB) and silently drops a
	// longer one. A Let's Encrypt chain with its key is about 4 kB.
	maxPEM = 15000
	// maxCertNames is Let's Encrypt's limit of names per certificate.
	maxCertNames = 100
)

// checkCertName accepts what checkHost accepts, or a wildcard "*.NAME":
// a crt-list SNI filter.
func checkCertName(n string) error {
	if rest, ok := strings.CutPrefix(n, "*."); ok {
		if err := checkHost(rest); err != nil || !strings.Contains(rest, ".") {
			return fmt.Errorf("invalid certificate name %s: want a host name or *. and a name of two labels or more", names.Quote(n))
		}
		return nil
	}
	if err := checkHost(n); err != nil {
		return fmt.Errorf("invalid certificate name %s: want a host name or *. and a host name", names.Quote(n))
	}
	return nil
}

func checkCertNames(ns []string) error {
	if len(ns) == 0 || len(ns) > maxCertNames {
		return fmt.Errorf("a certificate needs 1 to %d names, got %d", maxCertNames, len(ns))
	}
	for i, n := range ns {
		if err := checkCertName(n); err != nil {
			return err
		}
		if slices.Contains(ns[:i], n) {
			return fmt.Errorf("certificate name %s given twice", n)
		}
	}
	return nil
}

// certID is the file name a certificate is installed under: its first
// name, a wildcard's "*" spelled "_" (no host name has one).
func certID(first string) string {
	if rest, ok := strings.CutPrefix(first, "*"); ok {
		return "_" + rest
	}
	return first
}

// parseCertPEM checks that data holds a certificate chain and its private
// key, that the certificate covers every name and is valid now, and
// returns the chain and key re-encoded: only those blocks reach HAProxy,
// with no blank line (which would end a CLI payload).
func parseCertPEM(ns []string, data []byte, now time.Time) (leaf *x509.Certificate, out []byte, err error) {
	b, err := certbundle.Parse(data)
	if err != nil {
		return nil, nil, err
	}
	for _, n := range ns {
		if err := b.Check(n, now); err != nil {
			return nil, nil, err
		}
	}
	out = slices.Concat(b.ChainPEM, b.KeyPEM)
	if len(out) > maxPEM {
		return nil, nil, fmt.Errorf("certificate chain and key take %d bytes as PEM; HAProxy's runtime API takes at most %d", len(out), maxPEM)
	}
	return b.Leaf(), out, nil
}

// fingerprint is how HAProxy's "show ssl cert FILE" names a certificate:
// the SHA-1 of its DER, in upper-case hex.
func fingerprint(der []byte) string {
	sum := sha1.Sum(der)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}
