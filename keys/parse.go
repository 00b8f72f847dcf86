package keys

import (
	"crypto/rsa"
	"fmt"
	"strings"

	gossh "golang.org/x/crypto/ssh"
)

// MaxKeyText bounds the key text we look at; real public keys are < 16 KiB.
const MaxKeyText = 16 << 10

// Parsed is a public key as given by a user.
type Parsed struct {
	Key         gossh.PublicKey
	Type        string // ssh-ed25519, ssh-rsa, ...
	Fingerprint string // SHA256:...
	Comment     string
	Line        string // normalized authorized_keys line: "TYPE BASE64 COMMENT"
}

// Parse reads one public key in authorized_keys form ("ssh-ed25519 AAAA...
// comment"). It refuses private keys, options, several keys at once and
// keys too weak to trust.
func Parse(text string) (Parsed, error) {
	if len(text) > MaxKeyText {
		return Parsed{}, fmt.Errorf("key text is %d bytes; a public key is one line of under 16 KiB", len(text))
	}
	text = strings.TrimSpace(text)
	if text == "" {
		return Parsed{}, fmt.Errorf("no key text: give the public key (the .pub file) with --public or on stdin")
	}
	if strings.Contains(text, "PRIVATE KEY") {
		return Parsed{}, fmt.Errorf("that is a private key; give the public key (the .pub file) and keep the private one secret")
	}
	if strings.ContainsAny(text, "\r\n") {
		return Parsed{}, fmt.Errorf("key text has several lines; add one public key at a time")
	}
	if strings.HasPrefix(text, "ssh-dss ") {
		// x/crypto no longer parses DSA keys, but users still have them.
		return Parsed{}, fmt.Errorf("ssh-dss keys are too weak and OpenSSH no longer uses them; use ssh-keygen -t ed25519")
	}
	key, comment, options, rest, err := gossh.ParseAuthorizedKey([]byte(text))
	if err != nil {
		return Parsed{}, fmt.Errorf("key text is not an SSH public key (want \"ssh-ed25519 AAAA... comment\")")
	}
	if len(options) > 0 {
		return Parsed{}, fmt.Errorf("key options such as %q are not allowed; give the bare public key", options[0])
	}
	if len(rest) > 0 {
		return Parsed{}, fmt.Errorf("key text has several keys; add one public key at a time")
	}
	if err := checkStrength(key); err != nil {
		return Parsed{}, err
	}
	line := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(key)))
	if comment != "" {
		line += " " + comment
	}
	return Parsed{
		Key:         key,
		Type:        key.Type(),
		Fingerprint: gossh.FingerprintSHA256(key),
		Comment:     comment,
		Line:        line,
	}, nil
}

func checkStrength(key gossh.PublicKey) error {
	switch key.Type() {
	case gossh.KeyAlgoRSA:
		ck, ok := key.(gossh.CryptoPublicKey)
		if !ok {
			return nil
		}
		if rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey); ok && rk.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits is too weak (minimum 2048); use ssh-keygen -t ed25519", rk.N.BitLen())
		}
	}
	return nil
}
