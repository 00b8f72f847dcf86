package cloud

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
)

// ParseHostKey reads a host key as an operator pastes it: an
// authorized_keys line ("ssh-ed25519 AAAA... comment") or a line of
// ssh-keyscan or known_hosts ("HOST ssh-ed25519 AAAA..."), whose host
// part is ignored: the operator chose the key for this host.
func ParseHostKey(s string) (ssh.PublicKey, error) {
	line := strings.TrimSpace(s)
	if line == "" {
		return nil, errors.New("empty host key: give it as 'ssh-ed25519 AAAA...'")
	}
	if !strings.ContainsAny(line, "\r\n") {
		if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line)); err == nil {
			return k, nil
		}
		if _, _, k, _, _, err := ssh.ParseKnownHosts([]byte(line)); err == nil {
			return k, nil
		}
	}
	return nil, fmt.Errorf("invalid host key %s: give it as 'ssh-ed25519 AAAA...' (the output of ssh-keyscan HOST will do)", names.Quote(line))
}

// KnownHostKeys are the keys file (OpenSSH known_hosts format, hashed
// names included) lists for host on port: one or more, or an error that
// says there are none. @cert-authority lines are not keys of the host and
// are not used.
func KnownHostKeys(file, host, port string) ([]ssh.PublicKey, error) {
	check, err := knownhosts.New(file)
	if err != nil {
		return nil, fmt.Errorf("reading the known hosts file: %s", msgtext.OneLine(strings.TrimPrefix(err.Error(), "knownhosts: ")))
	}
	// The package checks keys and lists none; a key nobody has is a
	// mismatch for every line of the host, and the error lists them.
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	probe, _ := ssh.NewPublicKey(priv.Public())
	err = check(net.JoinHostPort(host, port), &net.TCPAddr{}, probe)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		ke = &knownhosts.KeyError{}
	}
	// The error lists authorities' keys too, without saying so: their
	// lines do.
	text, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading the known hosts file: %w", err)
	}
	lines := strings.Split(string(text), "\n")
	var keys []ssh.PublicKey
	for _, k := range ke.Want {
		if k.Line < 1 || k.Line > len(lines) || !strings.HasPrefix(strings.TrimSpace(lines[k.Line-1]), "@") {
			keys = append(keys, k.Key)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s has no key for %s", names.Quote(file), msgtext.OneLine(knownhosts.Normalize(net.JoinHostPort(host, port))))
	}
	return keys, nil
}

// ScanHostKey returns the key the SSH server at addr presents, as
// ssh-keyscan does, preferring ed25519: what trust on first use pins. It
// authenticates nothing.
func ScanHostKey(ctx context.Context, addr string, timeout time.Duration) (ssh.PublicKey, error) {
	addr, _ = splitAddr(addr)
	if timeout <= 0 {
		timeout = DefaultSSHTimeout
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	errSeen := errors.New("seen")
	var seen ssh.PublicKey
	_, _, _, err = ssh.NewClientConn(conn, addr, &ssh.ClientConfig{
		User: "upscale-keyscan",
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			seen = key
			return errSeen
		},
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
			ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256},
		Timeout: timeout,
	})
	if seen != nil {
		return seen, nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, ctx.Err())
	}
	return nil, handshakeError(err, addr, "", timeout)
}

// AuthorizedKeys is keys in authorized_keys form, one a line: how a host's
// pinned keys are stored.
func AuthorizedKeys(keys []ssh.PublicKey) string {
	var lines []string
	for _, k := range keys {
		lines = append(lines, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))))
	}
	return strings.Join(lines, "\n")
}

// hostKeyError is a host key that is none of the ones expected.
type hostKeyError struct {
	addr string
	got  ssh.PublicKey
	want []ssh.PublicKey
}

func (e *hostKeyError) Error() string {
	return fmt.Sprintf("verifying the host key of %s: it is %s, expected %s", e.addr, describeKey(e.got), describeKeys(e.want))
}

func describeKey(k ssh.PublicKey) string { return k.Type() + " " + ssh.FingerprintSHA256(k) }

func describeKeys(keys []ssh.PublicKey) string {
	var s []string
	for _, k := range keys {
		s = append(s, describeKey(k))
	}
	return strings.Join(s, " or ")
}

func pinned(keys []ssh.PublicKey, k ssh.PublicKey) bool {
	for _, p := range keys {
		if bytes.Equal(p.Marshal(), k.Marshal()) {
			return true
		}
	}
	return false
}

// hostKeyAlgorithms asks for the pinned keys' types only: a host with
// several keys would otherwise show the one we prefer, and look like a
// mismatch.
func hostKeyAlgorithms(keys []ssh.PublicKey) []string {
	var algos []string
	add := func(a ...string) {
		for _, x := range a {
			if !slices.Contains(algos, x) {
				algos = append(algos, x)
			}
		}
	}
	for _, k := range keys {
		if k.Type() == ssh.KeyAlgoRSA {
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		} else {
			add(k.Type())
		}
	}
	return algos
}
