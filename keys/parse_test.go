package keys

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

func authorizedLine(t *testing.T, pub any, comment string) string {
	t.Helper()
	k, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(k))) + " " + comment
}

func TestParse(t *testing.T) {
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaWeak, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsaOK, _ := rsa.GenerateKey(rand.Reader, 2048)
	ed := authorizedLine(t, edPub, "alice@laptop")
	privPEM, _ := gossh.MarshalPrivateKey(edPriv, "")

	for _, tc := range []struct {
		name, in, wantErr, wantType, wantComment string
	}{
		{name: "ed25519", in: ed, wantType: "ssh-ed25519", wantComment: "alice@laptop"},
		{name: "surrounding blanks", in: "  " + ed + "\n", wantType: "ssh-ed25519"},
		{name: "ecdsa", in: authorizedLine(t, &ecKey.PublicKey, "ci"), wantType: "ecdsa-sha2-nistp256"},
		{name: "rsa 2048", in: authorizedLine(t, &rsaOK.PublicKey, "old"), wantType: "ssh-rsa"},
		{name: "rsa 1024", in: authorizedLine(t, &rsaWeak.PublicKey, "weak"), wantErr: "RSA key of 1024 bits is too weak"},
		{name: "empty", in: "  ", wantErr: "no key text"},
		{name: "dsa", in: "ssh-dss AAAAB3NzaC1kc3MAAACBAP8e old@host", wantErr: "ssh-dss keys are too weak"},
		{name: "private key", in: string(pem.EncodeToMemory(privPEM)), wantErr: "that is a private key"},
		{name: "options", in: `command="/bin/sh" ` + ed, wantErr: "key options such as"},
		{name: "two lines", in: ed + "\n" + ed, wantErr: "several lines"},
		{name: "garbage", in: "hello world", wantErr: "is not an SSH public key"},
		{name: "bad base64", in: "ssh-ed25519 AAAA!!!! me", wantErr: "is not an SSH public key"},
		{name: "huge", in: strings.Repeat("A", 17<<10), wantErr: "under 16 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse = %v, want error containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("error spans lines: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Type != tc.wantType || !strings.HasPrefix(p.Fingerprint, "SHA256:") {
				t.Fatalf("got type %q fingerprint %q", p.Type, p.Fingerprint)
			}
			if tc.wantComment != "" && p.Comment != tc.wantComment {
				t.Fatalf("comment %q, want %q", p.Comment, tc.wantComment)
			}
			again, err := Parse(p.Line)
			if err != nil || again.Fingerprint != p.Fingerprint {
				t.Fatalf("normalized line %q does not parse back: %v", p.Line, err)
			}
		})
	}
}

func TestParseFingerprintMatchesOpenSSH(t *testing.T) {
	// Key and fingerprint as printed by `ssh-keygen -lf`.
	const line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMA+rLb90FPhbw68HV/2jes5L4j6o918eRTOTFuR3uZk seed@example"
	const want = "SHA256:VVrC9926AVPuYfbkpz/IQSEVkVXl/1nuXeas56dqafA"
	p, err := Parse(line)
	if err != nil {
		t.Fatal(err)
	}
	if p.Fingerprint != want {
		t.Fatalf("fingerprint %s, want %s", p.Fingerprint, want)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMA+rLb90FPhbw68HV/2jes5L4j6o918eRTOTFuR3uZk seed@example")
	f.Fuzz(func(t *testing.T, in string) {
		p, err := Parse(in)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if p.Key == nil || !strings.HasPrefix(p.Fingerprint, "SHA256:") || strings.ContainsAny(p.Line, "\r\n") {
			t.Fatalf("accepted key is incomplete: %+v", p)
		}
	})
}
