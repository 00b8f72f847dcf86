package certs

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/upscalehq/upscale/certbundle"
)

func TestInternalCA(t *testing.T) {
	ctx := t.Context()
	st := openStore(t)
	// Two servers starting at once on one store make one root.
	cas := make([]*InternalCA, 2)
	var wg sync.WaitGroup
	for i := range cas {
		wg.Go(func() {
			ca, err := LoadOrCreateCA(ctx, NewStorage(st, 0), time.Hour)
			if err != nil {
				t.Error(err)
			}
			cas[i] = ca
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if !bytes.Equal(cas[0].RootPEM(), cas[1].RootPEM()) {
		t.Fatal("two servers made two roots")
	}
	again, err := LoadOrCreateCA(ctx, NewStorage(st, 0), time.Hour)
	if err != nil || !bytes.Equal(again.RootPEM(), cas[0].RootPEM()) {
		t.Fatalf("a restarted server has another root: %v", err)
	}

	key := newKey(t)
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"hello.test.upscale.localhost"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(csrDER)
	issued, err := again.Issue(ctx, csr)
	if err != nil {
		t.Fatal(err)
	}
	b, err := certbundle.Parse(join(issued.Certificate, keyPEM(t, key)))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check("hello.test.upscale.localhost", time.Now()); err != nil {
		t.Fatal(err)
	}
	if life := time.Until(b.Leaf().NotAfter); life > time.Hour || life < 50*time.Minute {
		t.Errorf("certificate lasts %v, want the CA's lifetime of 1h", life)
	}

	// The root file is what a client trusts: the certificate verifies
	// against it for its name.
	path := filepath.Join(t.TempDir(), "root.crt")
	if err := again.WriteRoot(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatalf("root file holds no certificate: %q", data)
	}
	if _, err := b.Leaf().Verify(x509.VerifyOptions{DNSName: "hello.test.upscale.localhost", Roots: pool}); err != nil {
		t.Errorf("issued certificate does not verify against the root file: %v", err)
	}
	if blk, _ := pem.Decode(data); blk == nil || bytes.Contains(data, []byte("PRIVATE")) {
		t.Error("root file holds something else than the root certificate")
	}

	// A CSR whose signature is wrong is refused.
	csr.Signature[0] ^= 0xff
	if _, err := again.Issue(ctx, csr); err == nil {
		t.Error("a CSR with a bad signature was signed")
	}
}
