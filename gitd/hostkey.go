package gitd

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/upscalehq/upscale/atomicfile"
)

// LoadHostKey reads the server's ed25519 host key from path, generating and
// keeping one on first start so clients' known_hosts stay valid.
func LoadHostKey(path string) (gossh.Signer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return generateHostKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading host key: %w", err)
	}
	s, err := gossh.ParsePrivateKey(b)
	if err != nil && torn(b) {
		// Written by a release that wrote in place and cut short by a
		// crash: the key is lost either way, and refusing to start would
		// not bring it back. It is kept aside for the operator.
		aside := fmt.Sprintf("%s.torn-%d", path, time.Now().Unix())
		if err := os.Rename(path, aside); err != nil {
			return nil, fmt.Errorf("host key %s is cut short; moving it aside: %w", path, err)
		}
		return generateHostKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w", path, err)
	}
	return s, nil
}

// torn is a key file a crash cut short: empty, or a PEM block that never
// ends. Anything else that does not parse is the operator's to look at.
func torn(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) == 0 || (bytes.HasPrefix(b, []byte("-----BEGIN ")) && !bytes.Contains(b, []byte("\n-----END ")))
}

func generateHostKey(path string) (gossh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating host key: %w", err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "upscale host key")
	if err != nil {
		return nil, fmt.Errorf("encoding host key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("writing host key: %w", err)
	}
	err = atomicfile.Create(path, pem.EncodeToMemory(block), 0o600)
	if errors.Is(err, os.ErrExist) {
		// Another process starting at once published its key first.
		return LoadHostKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("writing host key: %w", err)
	}
	return gossh.NewSignerFromKey(priv)
}
