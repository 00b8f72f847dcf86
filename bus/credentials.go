package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nkeys"

	"github.com/upscalehq/upscale/atomicfile"
	"github.com/upscalehq/upscale/names"
)

// maxCredentialsFile bounds what ReadCredentials reads: a real file is a
// few hundred bytes, and the path may come from a flag pointing anywhere.
const maxCredentialsFile = 64 << 10

// Credentials say where the bus is and who we are on it. The embedded server
// hands out nkeys; user/password exists for an external NATS configured that
// way (`--bus nats://user:pass@host`). At most one of the two is set.
//
// The JSON form is the file an agent reads:
//
//	{"url": "tls://10.0.0.1:4222", "agent": "h1", "nkey": "SUA...",
//	 "ca": "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"}
type Credentials struct {
	// URL is one NATS URL (nats:// or tls://) or several separated by commas,
	// never with user info: secrets go in the fields below.
	URL string `json:"url"`
	// Agent is the host name when these are an agent's credentials. It picks
	// the inbox prefix the agent's permissions allow (_INBOX.agent.HOST).
	Agent    string `json:"agent,omitempty"`
	NKey     string `json:"nkey,omitempty"` // user nkey seed ("SU...")
	User     string `json:"user,omitempty"`
	Password string `json:"password,omitempty"`
	// CA is a PEM certificate. When set, the connection is TLS (handshake
	// first), the server's certificate must chain to this CA and no other
	// and carry the URL's host among its names, and a server that answers
	// in plain text is refused. When empty, the URL's scheme decides:
	// nats:// may be plain text, tls:// verifies against the system roots.
	CA string `json:"ca,omitempty"`
}

// String keeps secrets out of logs and error messages built with %v.
func (c Credentials) String() string {
	auth := "none"
	switch {
	case c.NKey != "":
		auth = "nkey"
	case c.User != "":
		auth = "user " + c.User
	}
	s := fmt.Sprintf("bus %s (auth %s", c.URL, auth)
	if c.CA != "" {
		s += ", pinned CA"
	}
	s += ")"
	if c.Agent != "" {
		s += " as agent " + c.Agent
	}
	return s
}

// GoString covers %#v, which would otherwise print the seed.
func (c Credentials) GoString() string { return c.String() }

// LogValue covers slog, which does not use String.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// CredentialsFromURL turns a `--bus nats://user:pass@host:4222` flag into
// Credentials, moving the user info out of the URL.
func CredentialsFromURL(raw string) (Credentials, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Credentials{}, fmt.Errorf("bus url: %w", err)
	}
	var c Credentials
	if u.User != nil {
		c.User = u.User.Username()
		c.Password, _ = u.User.Password()
		u.User = nil
	}
	c.URL = u.String()
	if err := c.validate(); err != nil {
		return Credentials{}, err
	}
	return c, nil
}

// ReadCredentials reads and validates a credentials file. It refuses a file
// that others can read or write, as ssh does for private keys: the file is
// a password to the bus.
func ReadCredentials(path string) (Credentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Credentials{}, fmt.Errorf("credentials %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return Credentials{}, fmt.Errorf("credentials %s: mode %04o lets others read it; chmod 600 it", path, perm)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxCredentialsFile+1))
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials %s: %w", path, err)
	}
	c, err := parseCredentials(data)
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials %s: %w", path, err)
	}
	return c, nil
}

// parseCredentials is the part of ReadCredentials that sees file content;
// kept apart so it can be fuzzed without a file system. It is stricter than
// encoding/json: keys match exactly (not case-insensitively) and at most
// once, values are strings, and the text is valid UTF-8, so that what an
// operator reads in the file is what the agent uses.
func parseCredentials(data []byte) (Credentials, error) {
	if len(data) > maxCredentialsFile {
		return Credentials{}, fmt.Errorf("larger than %d bytes", maxCredentialsFile)
	}
	if !utf8.Valid(data) {
		return Credentials{}, errors.New("invalid JSON: not UTF-8")
	}
	var c Credentials
	fields := map[string]*string{"url": &c.URL, "agent": &c.Agent, "nkey": &c.NKey, "user": &c.User, "password": &c.Password, "ca": &c.CA}
	seen := map[string]bool{}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return Credentials{}, errors.New("invalid JSON: want an object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return Credentials{}, fmt.Errorf("invalid JSON: %w", err)
		}
		key := tok.(string) // object keys are always strings
		dst, ok := fields[key]
		if !ok {
			return Credentials{}, fmt.Errorf("unknown field %.40q", key)
		}
		if seen[key] {
			return Credentials{}, fmt.Errorf("field %q given twice", key)
		}
		seen[key] = true
		tok, err = dec.Token()
		if err != nil {
			return Credentials{}, fmt.Errorf("invalid JSON: %w", err)
		}
		v, ok := tok.(string)
		if !ok {
			return Credentials{}, fmt.Errorf("field %q: want a string", key)
		}
		*dst = v
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return Credentials{}, errors.New("invalid JSON: unterminated object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return Credentials{}, errors.New("invalid JSON: data after the object")
	}
	if err := c.validate(); err != nil {
		return Credentials{}, err
	}
	return c, nil
}

// Write stores c at path with mode 0600, replacing any previous file
// atomically so an agent never reads half a file.
func (c Credentials) Write(path string) error {
	if err := c.validate(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(data, '\n'), 0o600)
}

func (c Credentials) validate() error {
	if c.URL == "" {
		return errors.New("credentials: url is missing")
	}
	for u := range strings.SplitSeq(c.URL, ",") {
		if err := checkServerURL(strings.TrimSpace(u)); err != nil {
			return fmt.Errorf("credentials: %w", err)
		}
	}
	if c.Agent != "" {
		if err := names.Check("agent host", c.Agent); err != nil {
			return fmt.Errorf("credentials: %w", err)
		}
	}
	if c.NKey != "" && (c.User != "" || c.Password != "") {
		return errors.New("credentials: nkey and user/password are exclusive")
	}
	if (c.User == "") != (c.Password == "") {
		return errors.New("credentials: user and password go together")
	}
	for _, f := range []struct{ name, v string }{{"user", c.User}, {"password", c.Password}} {
		if len(f.v) > 1024 {
			return fmt.Errorf("credentials: %s longer than 1024 bytes", f.name)
		}
		if strings.ContainsFunc(f.v, unicode.IsControl) {
			return fmt.Errorf("credentials: %s contains control characters", f.name)
		}
	}
	if c.NKey != "" {
		if _, err := userKey(c.NKey); err != nil {
			return fmt.Errorf("credentials: %w", err)
		}
	}
	if c.CA != "" {
		if _, err := parseCertPEM(c.CA); err != nil {
			return fmt.Errorf("credentials: ca: %w", err)
		}
	}
	return nil
}

func checkServerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("url %s: %w", names.Quote(s), err)
	}
	if u.Scheme != "nats" && u.Scheme != "tls" {
		return fmt.Errorf("url %s: scheme must be nats or tls", names.Quote(s))
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("url %s: no host", names.Quote(s))
	}
	if u.User != nil {
		return fmt.Errorf("url %s: put user and password in their own fields", names.Quote(u.Redacted()))
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return fmt.Errorf("url %s: only scheme://host:port", names.Quote(s))
	}
	return nil
}

// userKey decodes a user seed. Other seed kinds (operator, account) are
// refused: handing one to Connect is always a mistake.
func userKey(seed string) (nkeys.KeyPair, error) {
	prefix, _, err := nkeys.DecodeSeed([]byte(seed))
	if err != nil {
		return nil, errors.New("nkey is not a valid seed")
	}
	if prefix != nkeys.PrefixByteUser {
		return nil, errors.New("nkey is not a user seed")
	}
	kp, err := nkeys.FromSeed([]byte(seed))
	if err != nil {
		return nil, errors.New("nkey is not a valid seed")
	}
	return kp, nil
}
