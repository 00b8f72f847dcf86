package cloud

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Keys of testdata/known_hosts (made with ssh-keygen; hashed.example's
// line hashed with ssh-keygen -H).
const (
	fpA      = "SHA256:QPdetUwCq8aIlEwynv93tYbZfsmwsqUkB+AmqAbvLPE" // 10.0.0.231, ed25519
	fpA2     = "SHA256:EQ2oCKKuS8vH2K9/NJakL5ddMNAQ1W7pbKDgOtKh7YI" // 10.0.0.231, ecdsa
	fpB      = "SHA256:Kzq/gU1+AuR0oGvIe0LeMbTKv0cn2NN77ja51fvDvVk" // [10.0.0.232]:2222
	fpC      = "SHA256:mnvTy0IpCNThqSlTskmMVCw+gDerDI1JR10HHkzIoLw" // hashed.example
	keyA     = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICQxNkRqq08GeRHRsjm1FLmDz4h80e1VTsaFlCd2Iljr"
	keyscanA = "10.0.0.231 " + keyA
)

func fingerprints(keys []ssh.PublicKey) []string {
	var fps []string
	for _, k := range keys {
		fps = append(fps, ssh.FingerprintSHA256(k))
	}
	return fps
}

func TestParseHostKey(t *testing.T) {
	for _, c := range []struct{ in, fp, err string }{
		{keyA, fpA, ""},
		{keyA + " root@hosta\n", fpA, ""},
		{keyscanA, fpA, ""},
		{"|1|FbrDE5FH8JvmFXhr43jyN/Y173s=|3zuQJO3H9g3/4p+Wzko9lfxvyK8= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPjVl7ntcIli7biI3aOEj1V9Tq+c8dBtNqlr/uK42foy", fpC, ""},
		{"", "", "empty host key: give it as 'ssh-ed25519 AAAA...'"},
		{"ssh-ed25519", "", `invalid host key "ssh-ed25519": give it as 'ssh-ed25519 AAAA...' (the output of ssh-keyscan HOST will do)`},
		{"ssh-ed25519 AAAAnotbase64!", "", `invalid host key "ssh-ed25519 AAAAnotbase64!": give it as`},
		{keyA + "\n" + keyA, "", "invalid host key"},
		{"SHA256:QPdetUwCq8aIlEwynv93tYbZfsmwsqUkB+AmqAbvLPE", "", "invalid host key"},
	} {
		k, err := ParseHostKey(c.in)
		switch {
		case c.err == "" && (err != nil || ssh.FingerprintSHA256(k) != c.fp):
			t.Errorf("ParseHostKey(%q) = %v, %v; want %s", c.in, k, err, c.fp)
		case c.err != "" && (err == nil || !strings.HasPrefix(err.Error(), c.err)):
			t.Errorf("ParseHostKey(%q) error %v, want %q", c.in, err, c.err)
		}
	}
}

func TestKnownHostKeys(t *testing.T) {
	file := filepath.Join("testdata", "known_hosts")
	for _, c := range []struct {
		host, port string
		fps        []string
		err        string
	}{
		{"10.0.0.231", "22", []string{fpA, fpA2}, ""},
		{"10.0.0.232", "2222", []string{fpB}, ""},
		{"hashed.example", "22", []string{fpC}, ""},
		// Another port is another entry, as OpenSSH reads it.
		{"10.0.0.232", "22", nil, `"testdata/known_hosts" has no key for 10.0.0.232`},
		{"10.0.0.231", "2222", nil, `"testdata/known_hosts" has no key for [10.0.0.231]:2222`},
		// A CA's key is not the host's.
		{"h.example", "22", nil, `"testdata/known_hosts" has no key for h.example`},
	} {
		keys, err := KnownHostKeys(file, c.host, c.port)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("KnownHostKeys(%s:%s) = %v, %v; want error %q", c.host, c.port, fingerprints(keys), err, c.err)
			}
			continue
		}
		if err != nil || !slices.Equal(fingerprints(keys), c.fps) {
			t.Errorf("KnownHostKeys(%s:%s) = %v, %v; want %v", c.host, c.port, fingerprints(keys), err, c.fps)
		}
	}

	bad := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(bad, []byte("10.0.0.231 ssh-ed25519 AAAA\x1b[2Jsecret\n"), 0o600)
	_, err := KnownHostKeys(bad, "10.0.0.231", "22")
	if err == nil || !strings.HasPrefix(err.Error(), "reading the known hosts file: "+bad+": ") || control.MatchString(err.Error()) {
		t.Errorf("a damaged file: %v", err)
	}
	_, err = KnownHostKeys(filepath.Join(t.TempDir(), "none"), "10.0.0.231", "22")
	if err == nil || !strings.HasPrefix(err.Error(), "reading the known hosts file: open ") {
		t.Errorf("a missing file: %v", err)
	}
}

func TestHostKeyError(t *testing.T) {
	a, _ := ParseHostKey(keyA)
	c, _ := ParseHostKey("x ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPjVl7ntcIli7biI3aOEj1V9Tq+c8dBtNqlr/uK42foy")
	e := &hostKeyError{addr: "10.0.0.231:22", got: c, want: []ssh.PublicKey{a}}
	if want := "verifying the host key of 10.0.0.231:22: it is ssh-ed25519 " + fpC + ", expected ssh-ed25519 " + fpA; e.Error() != want {
		t.Errorf("%s\nwant %s", e, want)
	}
	if !pinned([]ssh.PublicKey{c, a}, a) || pinned([]ssh.PublicKey{c}, a) {
		t.Error("pinned tells keys apart wrongly")
	}
	keys, _ := KnownHostKeys(filepath.Join("testdata", "known_hosts"), "10.0.0.231", "22")
	if got := hostKeyAlgorithms(append(keys, a)); !slices.Equal(got, []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256}) {
		t.Errorf("hostKeyAlgorithms = %v", got)
	}
}

// Host keys are pasted by operators and read from their files: whatever
// the text, one key or one line of error without control characters.
func FuzzParseHostKey(f *testing.F) {
	f.Add(keyA)
	f.Add(keyscanA)
	f.Add("[10.0.0.232]:2222 ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBLUYvbQhsq7Blcvo91o9daDKdXe2bvwvMPA+Qwa598azsw9Z5IKpDBgNNSiuUyGVaU414rOaZuqqu7lQ7jcsX9g=")
	f.Add("ssh-ed25519 \x1b]0;x\x07")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseHostKey(s)
		if err != nil {
			if control.MatchString(err.Error()) {
				t.Errorf("error has control characters: %q", err)
			}
			return
		}
		if again, err := ParseHostKey(AuthorizedKeys([]ssh.PublicKey{k})); err != nil || !pinned([]ssh.PublicKey{k}, again) {
			t.Errorf("the key of %q does not read back: %v", s, err)
		}
	})
}

func FuzzKnownHostKeys(f *testing.F) {
	seed, _ := os.ReadFile(filepath.Join("testdata", "known_hosts"))
	f.Add(string(seed), "10.0.0.231")
	f.Add("@revoked * "+keyA+"\n"+keyscanA+"\n", "10.0.0.231")
	f.Add("10.0.0.2?1,!10.0.0.2 "+keyA+"\n", "10.0.0.231")
	f.Fuzz(func(t *testing.T, text, host string) {
		file := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		keys, err := KnownHostKeys(file, host, "22")
		if err != nil {
			if control.MatchString(err.Error()) {
				t.Errorf("error has control characters: %q", err)
			}
			return
		}
		if len(keys) == 0 {
			t.Error("no keys and no error")
		}
	})
}
