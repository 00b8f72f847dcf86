package cloud

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/shellquote"
)

// SSHTarget is an existing machine reached over SSH.
type SSHTarget struct {
	Addr     string // host or host:port (default port 22)
	User     string
	Identity []byte // private key file content (OpenSSH or PEM, without passphrase)
	// HostKeys: the host must present one of these. None is refused:
	// trust on first use is the caller's choice, made with ScanHostKey.
	HostKeys []ssh.PublicKey
	Timeout  time.Duration // for connecting and the SSH handshake, default 10 s
}

var errNoCredentials = errors.New("no agent credentials to install")

// DefaultSSHTimeout bounds connecting and the SSH handshake.
const DefaultSSHTimeout = 10 * time.Second

// keepalive is how often a quiet session (apt-get -qq runs for minutes
// without a word) proves the peer is still there, so a vanished host fails
// the command instead of hanging it, and NAT tables keep the connection.
const keepalive = 30 * time.Second

// Provision installs and starts the agent on t: it connects, checks it can
// act as root (user root, or passwordless sudo) on Debian, uploads the agent
// binary and credentials over the session's stdin (checksummed, atomic
// rename, 0755 and 0600) and runs Script as root, passing each output line
// to progress. It returns the host key it saw, also with most errors, so the
// caller can pin it next time. Each error is one line naming the step and
// the cause.
func Provision(ctx context.Context, t SSHTarget, in Install, progress func(string)) (ssh.PublicKey, error) {
	progress = orDiscard(progress)
	in = in.withDefaults()
	if err := in.Check(); err != nil {
		return nil, err
	}
	if len(in.Credentials) == 0 {
		return nil, errNoCredentials
	}
	agent, size, sum, err := openAgent(in.Agent)
	if err != nil {
		return nil, err
	}
	defer agent.Close()

	r, key, err := connect(ctx, t, progress)
	if err != nil {
		return key, err
	}
	defer r.close()
	if err := r.becomeRoot(ctx, progress); err != nil {
		return key, err
	}

	progress(fmt.Sprintf("-----> Uploading the agent (%.1f MB)", float64(size)/1e6))
	if err := r.upload(ctx, agent, sum, in.Dir, "upscale-agent", "0755"); err != nil {
		return key, fmt.Errorf("uploading the agent to %s: %w", r.host, err)
	}
	progress("-----> Uploading the credentials")
	credSum := sha256.Sum256(in.Credentials)
	if err := r.upload(ctx, bytes.NewReader(in.Credentials), hex.EncodeToString(credSum[:]), in.Dir, "credentials.json", "0600"); err != nil {
		return key, fmt.Errorf("uploading the credentials to %s: %w", r.host, err)
	}
	progress("-----> Running the install script as root")
	if err := r.script(ctx, Script(in), "installing the agent", progress); err != nil {
		return key, err
	}
	return key, nil
}

// Deprovision stops the agent on t, destroys its containers and removes its
// install directory (UninstallScript). Errors are one line, as Provision's.
func Deprovision(ctx context.Context, t SSHTarget, in Install, progress func(string)) error {
	progress = orDiscard(progress)
	in = in.withDefaults()
	if err := in.Check(); err != nil {
		return err
	}
	r, _, err := connect(ctx, t, progress)
	if err != nil {
		return err
	}
	defer r.close()
	if err := r.becomeRoot(ctx, progress); err != nil {
		return err
	}
	progress("-----> Running the uninstall script as root")
	return r.script(ctx, UninstallScript(in), "removing the agent", progress)
}

func orDiscard(progress func(string)) func(string) {
	if progress == nil {
		return func(string) {}
	}
	return progress
}

// openAgent opens the binary to upload and checksums it, so that the host
// can refuse a copy damaged on the way before it replaces a working agent.
func openAgent(name string) (f *os.File, size int64, sum string, err error) {
	if name == "" {
		return nil, 0, "", errors.New("no agent binary to install")
	}
	f, err = os.Open(name)
	if err != nil {
		return nil, 0, "", fmt.Errorf("reading the agent binary: %w", err)
	}
	h := sha256.New()
	size, err = io.Copy(h, f)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, "", fmt.Errorf("reading the agent binary: %w", err)
	}
	return f, size, hex.EncodeToString(h.Sum(nil)), nil
}

// remote is an authenticated connection to a target.
type remote struct {
	client *ssh.Client
	addr   string // host:port, for messages
	host   string // host alone, for messages
	user   string
	sudo   string // prefix that runs a command as root: "" or "sudo -n "
	stop   func() bool
	done   chan struct{}
}

func (r *remote) close() {
	r.stop()
	close(r.done)
	r.client.Close()
}

// splitAddr returns host:port (port 22 unless given) and the host alone.
func splitAddr(a string) (addr, host string) {
	if h, _, err := net.SplitHostPort(a); err == nil {
		return a, h
	}
	return net.JoinHostPort(a, "22"), a
}

func connect(ctx context.Context, t SSHTarget, progress func(string)) (*remote, ssh.PublicKey, error) {
	addr, host := splitAddr(t.Addr)
	signer, err := ssh.ParsePrivateKey(t.Identity)
	if err != nil {
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			return nil, nil, errors.New("reading the identity: the key is protected by a passphrase; give a key without one")
		}
		return nil, nil, fmt.Errorf("reading the identity: %s", strings.TrimPrefix(err.Error(), "ssh: "))
	}
	if len(t.HostKeys) == 0 {
		return nil, nil, fmt.Errorf("no host key to verify %s against", addr)
	}
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = DefaultSSHTimeout
	}
	progress(fmt.Sprintf("-----> Connecting to %s as %s", addr, t.User))
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	deadline := time.Now().Add(timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.Close() })

	var seen ssh.PublicKey
	cfg := &ssh.ClientConfig{
		User: t.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			seen = key
			if !pinned(t.HostKeys, key) {
				return &hostKeyError{addr: addr, got: key, want: t.HostKeys}
			}
			return nil
		},
		HostKeyAlgorithms: hostKeyAlgorithms(t.HostKeys),
		Timeout:           timeout,
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		stop()
		conn.Close()
		if ctx.Err() != nil {
			return nil, seen, fmt.Errorf("connecting to %s: %w", addr, ctx.Err())
		}
		return nil, seen, handshakeError(err, addr, t.User, timeout)
	}
	conn.SetDeadline(time.Time{})
	progress(fmt.Sprintf("       host key %s (as expected)", describeKey(seen)))
	r := &remote{client: ssh.NewClient(c, chans, reqs), addr: addr, host: host, user: t.User, stop: stop, done: make(chan struct{})}
	go r.keepalive()
	return r, seen, nil
}

func handshakeError(err error, addr, user string, timeout time.Duration) error {
	var hk *hostKeyError
	var ne net.Error
	switch {
	case errors.As(err, &hk):
		return hk
	case strings.Contains(err.Error(), "ssh: unable to authenticate"):
		return fmt.Errorf("authenticating as %s on %s: the key was refused", user, addr)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("connecting to %s: no SSH handshake within %s", addr, timeout)
	case errors.Is(err, io.EOF):
		return fmt.Errorf("connecting to %s: the server closed the connection during the SSH handshake", addr)
	}
	return fmt.Errorf("connecting to %s: %s", addr, msgtext.OneLine(strings.TrimPrefix(err.Error(), "ssh: handshake failed: ")))
}

func (r *remote) keepalive() {
	tick := time.NewTicker(keepalive)
	defer tick.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-tick.C:
		}
		answered := make(chan error, 1)
		go func() {
			_, _, err := r.client.SendRequest("keepalive@openssh.com", true, nil)
			answered <- err
		}()
		select {
		case err := <-answered:
			if err != nil {
				return
			}
		case <-time.After(2 * keepalive):
			r.client.Close()
			return
		case <-r.done:
			return
		}
	}
}

// probeScript answers what becomeRoot needs in one round trip. It tries
// the exact form later commands use (sudo -n /bin/sh), since a sudoers
// entry may allow some commands and not others.
const probeScript = `echo "upscale-probe uid=$(id -u)"
if [ -r /etc/debian_version ]; then echo "upscale-probe debian=$(head -n 1 /etc/debian_version)"; else echo "upscale-probe nodebian"; fi
if [ "$(id -u)" != 0 ]; then
	if command -v sudo > /dev/null 2>&1 && [ "$(sudo -n /bin/sh -c 'id -u' 2>/dev/null)" = 0 ]; then echo "upscale-probe sudo=yes"; else echo "upscale-probe sudo=no"; fi
fi
`

// probe is a host's answer to probeScript.
type probe struct {
	UID    int
	Debian string // /etc/debian_version's first line; "" = not Debian
	Sudo   bool
}

// parseProbe reads probeScript's output, ignoring whatever else a login
// shell may print (banners, rc files).
func parseProbe(out string) (probe, error) {
	var p probe
	uid := false
	for _, line := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), "upscale-probe ")
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(rest, "uid="):
			n, err := strconv.Atoi(rest[len("uid="):])
			if err != nil || n < 0 {
				return probe{}, fmt.Errorf("unexpected answer to id -u: %q", msgtext.OneLine(rest[len("uid="):]))
			}
			p.UID, uid = n, true
		case strings.HasPrefix(rest, "debian="):
			p.Debian = msgtext.OneLine(rest[len("debian="):])
			if p.Debian == "" {
				p.Debian = "(unknown version)"
			}
		case rest == "nodebian":
			p.Debian = ""
		case rest == "sudo=yes":
			p.Sudo = true
		case rest == "sudo=no":
			p.Sudo = false
		}
	}
	if !uid {
		return probe{}, errors.New("no answer to id -u")
	}
	return p, nil
}

func (r *remote) becomeRoot(ctx context.Context, progress func(string)) error {
	progress("-----> Checking " + r.host)
	out, err := r.run(ctx, probeScript, false, nil, nil)
	if err != nil {
		return fmt.Errorf("checking %s: %w", r.host, err)
	}
	p, err := parseProbe(out)
	if err != nil {
		return fmt.Errorf("checking %s: %w", r.host, err)
	}
	how := "as root"
	switch {
	case p.UID == 0:
	case p.Sudo:
		r.sudo = "sudo -n "
		how = "root via sudo"
	default:
		return fmt.Errorf("%s needs root or passwordless sudo for user %s", r.host, r.user)
	}
	if p.Debian == "" {
		return fmt.Errorf("%s is not Debian (no /etc/debian_version)", r.host)
	}
	progress(fmt.Sprintf("       Debian %s, %s", p.Debian, how))
	return nil
}

// upload writes src to dir/name on the host, through a temporary file that
// is renamed only once its checksum matches.
func (r *remote) upload(ctx context.Context, src io.Reader, sum, dir, name, mode string) error {
	dst := path.Join(dir, name)
	tmp := path.Join(dir, "."+name+".upload")
	script := fmt.Sprintf(`set -e
umask 022
mkdir -p %[1]s
umask 077
cat > %[2]s
got=$(sha256sum < %[2]s | cut -d ' ' -f 1)
if [ "$got" != %[3]s ]; then rm -f %[2]s; echo "error: the copy arrived damaged (sha256 $got)"; exit 1; fi
chmod %[4]s %[2]s
mv -f %[2]s %[5]s
`, shellquote.Quote(dir), shellquote.Quote(tmp), sum, mode, shellquote.Quote(dst))
	out, err := r.run(ctx, script, true, src, nil)
	if err != nil {
		if _, cause, ok := ScriptError(out); ok {
			return errors.New(cause)
		}
		return err
	}
	return nil
}

// script runs a generated script as root, streams its lines to progress
// and turns its "error: STEP: CAUSE" line into "STEP on HOST: CAUSE".
func (r *remote) script(ctx context.Context, script, what string, progress func(string)) error {
	out, err := r.run(ctx, script, true, nil, func(line string) {
		if !strings.HasPrefix(line, "error: ") {
			progress(line)
		}
	})
	if err == nil {
		return nil
	}
	if ctx.Err() == nil {
		if step, cause, ok := ScriptError(out); ok {
			if step == "" {
				step = what
			}
			return fmt.Errorf("%s on %s: %s", step, r.host, cause)
		}
	}
	return fmt.Errorf("%s on %s: %w", what, r.host, err)
}

// tailLines is how much of a command's output run keeps for errors.
const tailLines = 20

// run runs script with /bin/sh on the host (as root if asRoot), stdout and
// stderr merged, and returns the last lines of output. The error says how
// the command ended, with its last output line.
func (r *remote) run(ctx context.Context, script string, asRoot bool, stdin io.Reader, line func(string)) (string, error) {
	s, err := r.client.NewSession()
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("opening an SSH session: %w", err)
	}
	defer s.Close()
	if stdin != nil {
		s.Stdin = stdin
	}
	stdout, err := s.StdoutPipe()
	if err != nil {
		return "", err
	}
	var stderr capped
	s.Stderr = &stderr
	// The login shell runs this line: one /bin/sh -c with a single-quoted
	// word reads the same to POSIX shells (sh, dash, bash, zsh). Not to
	// fish (backslashes inside single quotes) or csh (no newline inside
	// them): a host whose login shell is one of those is not supported.
	cmd := "/bin/sh -c " + shellquote.Quote(script) + " 2>&1"
	if asRoot {
		cmd = r.sudo + cmd
	}
	if err := s.Start(cmd); err != nil {
		return "", fmt.Errorf("starting a command: %w", err)
	}
	var tail []string
	// ReadSlice, not ReadString: a host that never sends a newline must
	// not grow our memory; its long lines arrive cut in 64 KiB pieces.
	br := bufio.NewReaderSize(stdout, 64<<10)
	for {
		b, err := br.ReadSlice('\n')
		if len(b) > 0 {
			l := strings.TrimRight(string(b), "\r\n")
			if line != nil {
				line(l)
			}
			tail = append(tail, l)
			if len(tail) > tailLines {
				tail = tail[1:]
			}
		}
		if err != nil && err != bufio.ErrBufferFull {
			break
		}
	}
	err = s.Wait()
	// After Wait: stderr is written until then.
	if e := strings.TrimSpace(stderr.b.String()); e != "" {
		tail = append(tail, strings.Split(e, "\n")...)
	}
	out := strings.Join(tail, "\n")
	if err == nil {
		return out, nil
	}
	if ctx.Err() != nil {
		return out, ctx.Err()
	}
	var last string
	if len(tail) > 0 {
		last = ": " + msgtext.OneLine(tail[len(tail)-1])
	}
	var ee *ssh.ExitError
	var em *ssh.ExitMissingError
	switch {
	case errors.As(err, &ee) && ee.Signal() != "":
		return out, fmt.Errorf("killed by signal %s%s", ee.Signal(), last)
	case errors.As(err, &ee):
		return out, fmt.Errorf("exited %d%s", ee.ExitStatus(), last)
	case errors.As(err, &em):
		return out, fmt.Errorf("the connection was lost%s", last)
	}
	return out, fmt.Errorf("%w%s", err, last)
}

// capped keeps the first 64 KiB written to it: enough for any error, and
// bounded whatever the host sends.
// Not an embedded bytes.Buffer: io.Copy would use its ReadFrom and skip
// the cap.
type capped struct{ b bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := 64<<10 - c.b.Len(); room > 0 {
		c.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
