// Package gitd is Upscale's SSH server: host key, key authentication, one
// command tree per session, the git services, and the socket the git hooks
// report to.
package gitd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/upscalehq/upscale/commands"
	"github.com/upscalehq/upscale/hooks"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/repos"
)

// Config is what the server needs.
type Config struct {
	HostKey gossh.Signer
	// Keys says who a key is (see backend.Authenticator).
	Keys Keys
	// Pushes decides pushes and records them (see backend.Backend).
	Pushes     Pushes
	Repos      *repos.Repos
	SocketPath string
	Log        *slog.Logger
	// Run executes one command line for a session.
	Run func(ctx context.Context, inv commands.Invocation, args []string) int
	// IdleTimeout closes connections silent for this long (0: never).
	IdleTimeout time.Duration
	// HookTimeout bounds one hook's work, a build and deploy included.
	HookTimeout time.Duration
	// Limits bound what one client can make the server hold.
	Limits Limits
	// MaxPushSize bounds the pack of one push, in bytes (git's
	// receive.maxInputSize); 0 is no bound.
	MaxPushSize int64
	// SSHHost, when set, is the host name printed in hints and git
	// remotes (--ssh-host); else see sshHost.
	SSHHost string
}

// Keys says who a key is.
type Keys interface {
	// Authenticate is who key is; an error when it is not registered.
	Authenticate(ctx context.Context, key gossh.PublicKey) (keys.Principal, error)
	// Principal is who the key of a fingerprint is now.
	Principal(ctx context.Context, fingerprint string) (keys.Principal, error)
}

// Pushes is the application layer's side of a push: the hooks hand it
// each push's refs with who pushes, and relay what it says to the pusher.
// An error is the line that ends the hook with exit status 1, which makes
// git refuse the push (pre-receive).
type Pushes interface {
	PreReceive(ctx context.Context, who keys.Principal, app names.App, req hooks.Request, hold func(unlock func()), out func(string)) error
	PostReceive(ctx context.Context, who keys.Principal, app names.App, req hooks.Request, out func(string)) error
}

// Server is the SSH server plus the hook socket.
type Server struct {
	cfg    Config
	ssh    *ssh.Server
	git    *GitService
	pushes *pushRegistry
	gate   *gate

	mu        sync.Mutex
	hookLn    net.Listener
	hookConns sync.WaitGroup
}

// permFingerprint is where the public key callback leaves the fingerprint
// of an accepted key. x/crypto keeps the Permissions of the key that
// actually authenticated (CVE-2024-45337), so this is the proven key, not
// merely an offered one.
const permFingerprint = "upscale-key-fp"

// New builds a server; nothing listens until Serve.
func New(cfg Config) *Server {
	if cfg.HookTimeout == 0 {
		cfg.HookTimeout = time.Minute
	}
	s := &Server{cfg: cfg, pushes: newPushRegistry(), gate: newGate(cfg.Limits)}
	s.git = &GitService{Repos: cfg.Repos, SocketPath: cfg.SocketPath, Log: cfg.Log, MaxPushSize: cfg.MaxPushSize, pushes: s.pushes}
	s.ssh = &ssh.Server{
		Handler:              s.session,
		HostSigners:          []ssh.Signer{cfg.HostKey},
		IdleTimeout:          cfg.IdleTimeout,
		ServerConfigCallback: s.sshConfig,
		ConnCallback:         func(ctx ssh.Context, c net.Conn) net.Conn { return s.gate.accept(ctx, quickAck(c)) },
		ChannelHandlers:      map[string]ssh.ChannelHandler{"session": s.gate.sessionHandler},
		Version:              "Upscale",
		ConnectionFailedCallback: func(conn net.Conn, err error) {
			cfg.Log.Debug("ssh handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
		},
	}
	return s
}

// Git is the git service commands use for git-receive-pack/upload-pack.
func (s *Server) Git() *GitService { return s.git }

func (s *Server) sshConfig(ctx ssh.Context) *gossh.ServerConfig {
	return &gossh.ServerConfig{
		PublicKeyCallback: func(conn gossh.ConnMetadata, key gossh.PublicKey) (*gossh.Permissions, error) {
			if err := s.gate.waitLookup(ctx, conn.RemoteAddr()); err != nil {
				return nil, errors.New("unknown key")
			}
			if _, err := s.cfg.Keys.Authenticate(ctx, key); err != nil {
				return nil, errors.New("unknown key")
			}
			return &gossh.Permissions{Extensions: map[string]string{permFingerprint: gossh.FingerprintSHA256(key)}}, nil
		},
		// gliderlabs turns on NoClientAuth when none of its own handlers is
		// set; this keeps the "none" method refused.
		NoClientAuthCallback: func(gossh.ConnMetadata) (*gossh.Permissions, error) {
			return nil, errors.New("public key required")
		},
		// Called with a nil error only once a key's signature checked out.
		AuthLogCallback: func(_ gossh.ConnMetadata, _ string, err error) {
			if err == nil {
				s.gate.authenticated(ctx)
			}
		},
	}
}

// ServeSSH accepts ssh connections on l until Shutdown.
func (s *Server) ServeSSH(l net.Listener) error {
	err := s.ssh.Serve(l)
	if errors.Is(err, ssh.ErrServerClosed) {
		return nil
	}
	return err
}

// ServeHooks answers the hook clients on l (a unix socket) until Shutdown.
func (s *Server) ServeHooks(l net.Listener) error {
	s.mu.Lock()
	s.hookLn = l
	s.mu.Unlock()
	for {
		conn, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		s.hookConns.Add(1)
		go func() {
			defer s.hookConns.Done()
			s.serveHook(conn)
		}()
	}
}

// Shutdown stops accepting, lets running sessions finish until ctx ends,
// then cuts the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.ssh.Shutdown(ctx)
	if err != nil {
		s.ssh.Close()
	}
	s.mu.Lock()
	if s.hookLn != nil {
		s.hookLn.Close()
	}
	s.mu.Unlock()
	s.hookConns.Wait()
	return err
}

func (s *Server) session(sess ssh.Session) {
	exit := func(code int, format string, a ...any) {
		fmt.Fprintf(sess.Stderr(), "error: "+format+"\n", a...)
		_ = sess.Exit(code)
	}
	p, err := s.principal(sess)
	if err != nil {
		exit(1, "this key is no longer registered")
		return
	}
	if _, _, isPty := sess.Pty(); isPty {
		exit(1, "interactive terminals are not supported; run a command, e.g. %s help", s.prog(sess))
		return
	}
	args, err := commands.Split(sess.RawCommand())
	if err != nil {
		exit(2, "%v", err)
		return
	}
	if len(args) == 0 {
		args = []string{"help"}
	}
	if len(args) == 3 && args[0] == "git" && (args[1] == "upload-pack" || args[1] == "receive-pack") {
		// Some clients send "git upload-pack" rather than "git-upload-pack".
		args = []string{"git-" + args[1], args[2]}
	}
	ctx := withGitProtocol(sess.Context(), gitProtocol(sess.Environ()))
	inv := commands.Invocation{
		Principal: p,
		Prog:      s.prog(sess),
		Remote:    s.remote(sess),
		SSH:       true,
		Stdin:     sess,
		Stdout:    sess,
		Stderr:    sess.Stderr(),
	}
	code := s.cfg.Run(ctx, inv, args)
	s.cfg.Log.Debug("ssh command", "key", p.Name, "command", firstWords(args), "exit", code)
	_ = sess.Exit(code)
}

// principal resolves the session's key afresh from the store, so a key
// removed after login acts no more.
func (s *Server) principal(sess ssh.Session) (keys.Principal, error) {
	conn, ok := sess.Context().Value(ssh.ContextKeyConn).(*gossh.ServerConn)
	if !ok || conn.Permissions == nil {
		return keys.Principal{}, errors.New("no authenticated key")
	}
	fp := conn.Permissions.Extensions[permFingerprint]
	if fp == "" {
		return keys.Principal{}, errors.New("no authenticated key")
	}
	return s.cfg.Keys.Principal(sess.Context(), fp)
}

// prog is the ssh command line users type to reach this server.
func (s *Server) prog(sess ssh.Session) string {
	host, port := s.hostPort(sess.LocalAddr())
	if port == "22" {
		return "ssh upscale@" + host
	}
	return "ssh -p " + port + " upscale@" + host
}

// remote is the prefix of the git remotes of this server's apps.
func (s *Server) remote(sess ssh.Session) string {
	host, port := s.hostPort(sess.LocalAddr())
	return "ssh://upscale@" + net.JoinHostPort(host, port)
}

// hostPort is the host name and port users reach this server by. SSH
// carries no host name, so the one the user typed is unknown: the
// configured one wins, and a loopback connection is "localhost", the name
// the README uses (a different spelling of the same host is a second
// host-key prompt). Otherwise the address the client connected to.
func (s *Server) hostPort(a net.Addr) (string, string) {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return cmp.Or(s.cfg.SSHHost, "localhost"), "22"
	}
	host := tcp.IP.String()
	switch {
	case s.cfg.SSHHost != "":
		host = s.cfg.SSHHost
	case tcp.IP.IsLoopback():
		host = "localhost"
	}
	return host, strconv.Itoa(tcp.Port)
}

func firstWords(args []string) []string {
	if len(args) > 3 {
		return args[:3]
	}
	return args
}
