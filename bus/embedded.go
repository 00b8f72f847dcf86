package bus

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/upscalehq/upscale/atomicfile"
	"github.com/upscalehq/upscale/names"
)

// DefaultListen keeps the embedded bus off the network until an operator
// adds remote hosts and opens it deliberately.
const DefaultListen = "127.0.0.1:4222"

// maxPayload is the NATS default, set explicitly because the frame size
// limits in call.go are derived from it.
const maxPayload = 1 << 20

// EmbeddedConfig configures the NATS server inside `upscale server`.
type EmbeddedConfig struct {
	Dir    string // state: Dir/jetstream, Dir/credentials, Dir/tls (0700)
	Listen string // host:port, default DefaultListen; port 0 picks a free one
	// Advertise is the host:port agents dial, written into their
	// credentials. Default: Listen, with a wildcard host replaced by
	// 127.0.0.1 (only right for a single machine).
	Advertise string
	// TLSNames are the IP addresses and DNS names, without ports, that
	// clients may dial besides the two the server certificate always
	// covers: the Advertise host and the host of URL (what the server's
	// own connection dials). Default: 127.0.0.1 and localhost.
	TLSNames []string
	Log      *slog.Logger
}

// Embedded is a running embedded NATS server with JetStream.
//
// Every client authenticates with an nkey (ed25519): the server keeps only
// public keys in its configuration and each connection signs a fresh nonce,
// so no reusable secret crosses the network, and a stolen server config
// grants nothing. bcrypt'd passwords would protect the config but still
// send the password on every connect.
//
// Every connection is TLS, handshake first: the server sends nothing, not
// even INFO, before the client has started TLS. The certificate comes from
// a private CA created in Dir/tls on first start; credentials carry the CA
// certificate and Connect trusts nothing else, so no public CA, and no one
// who can get a certificate from one, can stand in for the bus.
type Embedded struct {
	cfg       EmbeddedConfig
	log       *slog.Logger
	srv       *server.Server
	host      string
	port      int
	advertise string
	certs     *certManager
	tlsConfig *tls.Config // the same pointer in every reload, see serverTLSConfig

	mu        sync.Mutex // serialises credential changes and reloads
	serverKey string     // seed
	agents    map[string]string
}

// StartEmbedded starts the server and waits until it accepts clients with
// JetStream ready.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.Dir == "" {
		return nil, errors.New("bus: embedded server needs a state directory")
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("bus: listen address %s: %w", names.Quote(cfg.Listen), err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("bus: listen address %s: bad port", names.Quote(cfg.Listen))
	}
	if port == 0 {
		port = server.RANDOM_PORT // nats-server reads 0 as "default 4222"
	}
	if host == "" {
		host = "0.0.0.0"
	}
	e := &Embedded{cfg: cfg, log: cfg.Log, host: host, port: port, agents: map[string]string{}}
	// The advertised host goes into the certificate, so it is settled
	// before the server starts; only a random port is filled in after.
	advHost := localHost(host)
	if cfg.Advertise != "" {
		if err := checkServerURL("tls://" + cfg.Advertise); err != nil {
			return nil, fmt.Errorf("bus: advertise: %w", err)
		}
		h, _, err := net.SplitHostPort(cfg.Advertise)
		if err != nil {
			return nil, fmt.Errorf("bus: advertise %s: %w", names.Quote(cfg.Advertise), err)
		}
		advHost = h
	}
	tlsNames := cfg.TLSNames
	if len(tlsNames) == 0 {
		tlsNames = []string{"127.0.0.1", "localhost"}
	}
	sans, err := newSANSet(append([]string{advHost, localHost(host)}, tlsNames...))
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	if err := e.loadKeys(); err != nil {
		return nil, err
	}
	if e.certs, err = loadCerts(e.tlsDir(), sans, e.log, time.Now); err != nil {
		return nil, err
	}
	e.tlsConfig = e.certs.serverTLSConfig()

	opts, err := e.options()
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded server: %w", err)
	}
	sl := &serverLog{l: cfg.Log.With("component", "nats")}
	srv.SetLoggerV2(sl, false, false, false)
	srv.Start()
	// Startup failures inside nats-server (a busy port) go to Fatalf and
	// leave the server half up instead of exiting, hence the explicit checks.
	if !waitReady(srv, sl, 30*time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("bus: embedded server did not start on %s: %s", cfg.Listen, sl.fatalOr("timeout"))
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("bus: embedded server: JetStream did not start: %s", sl.fatalOr("unknown error"))
	}
	e.srv = srv
	e.port = srv.Addr().(*net.TCPAddr).Port

	e.advertise = cfg.Advertise
	if e.advertise == "" {
		e.advertise = net.JoinHostPort(advHost, strconv.Itoa(e.port))
	}
	e.log.Info("bus started", "url", e.URL(), "advertise", e.advertise, "dir", cfg.Dir)
	return e, nil
}

// waitReady waits for the listener, giving up early once nats-server has
// reported a fatal error instead of sitting out the whole timeout.
func waitReady(srv *server.Server, sl *serverLog, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if srv.ReadyForConnections(100 * time.Millisecond) {
			return true
		}
		if sl.fatalOr("") != "" {
			return false
		}
	}
	return false
}

func localHost(host string) string {
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return "127.0.0.1"
	}
	return host
}

// URL is where processes on this machine reach the server. The tls
// scheme only tells a reader what to expect; Connect takes TLS from the CA
// in the credentials.
func (e *Embedded) URL() string {
	return "tls://" + net.JoinHostPort(localHost(e.host), strconv.Itoa(e.port))
}

// CA is the PEM certificate of the bus's private CA, the one every client
// must trust (and the only one it trusts) for this server.
func (e *Embedded) CA() string { return e.certs.caPEM }

// Shutdown stops the server and waits for JetStream to flush to disk.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// ServerCredentials are the credentials of `upscale server` itself: every
// subject, every stream.
func (e *Embedded) ServerCredentials() Credentials {
	return Credentials{URL: e.URL(), NKey: e.serverKey, CA: e.certs.caPEM}
}

// AgentCredentials returns the credentials of agent host, creating them on
// first use. They persist in Dir so an agent's file stays valid across
// server restarts.
func (e *Embedded) AgentCredentials(host string) (Credentials, error) {
	if err := names.Check("agent host", host); err != nil {
		return Credentials{}, fmt.Errorf("bus: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	seed, ok := e.agents[host]
	if !ok {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return Credentials{}, fmt.Errorf("bus: new agent key: %w", err)
		}
		b, err := kp.Seed()
		if err != nil {
			return Credentials{}, fmt.Errorf("bus: new agent key: %w", err)
		}
		seed = string(b)
		path := e.agentKeyPath(host)
		if err := atomicfile.Write(path, []byte(seed+"\n"), 0o600); err != nil {
			return Credentials{}, fmt.Errorf("bus: store agent key: %w", err)
		}
		e.agents[host] = seed
		if err := e.reload(); err != nil {
			delete(e.agents, host)
			os.Remove(path)
			return Credentials{}, err
		}
		e.log.Info("bus agent credentials created", "host", host)
	}
	return Credentials{URL: "tls://" + e.advertise, Agent: host, NKey: seed, CA: e.certs.caPEM}, nil
}

// RemoveAgent revokes agent host: its key is deleted and its open
// connections are closed by the server. Removing an unknown host is not an
// error, so decommissioning can be retried.
func (e *Embedded) RemoveAgent(host string) error {
	if err := names.Check("agent host", host); err != nil {
		return fmt.Errorf("bus: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.agents[host]; !ok {
		return nil
	}
	if err := os.Remove(e.agentKeyPath(host)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("bus: remove agent key: %w", err)
	}
	delete(e.agents, host)
	if err := e.reload(); err != nil {
		// The key file is gone, so the next start will not trust it either;
		// keep memory in line with disk and report.
		return err
	}
	e.log.Info("bus agent credentials removed", "host", host)
	return nil
}

// Agents lists the hosts that have agent credentials, sorted.
func (e *Embedded) Agents() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	hosts := make([]string, 0, len(e.agents))
	for h := range e.agents {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	return hosts
}

func (e *Embedded) reload() error {
	opts, err := e.options()
	if err != nil {
		return err
	}
	if err := e.srv.ReloadOptions(opts); err != nil {
		return fmt.Errorf("bus: apply credentials: %w", err)
	}
	return nil
}

func (e *Embedded) tlsDir() string     { return filepath.Join(e.cfg.Dir, "tls") }
func (e *Embedded) credDir() string    { return filepath.Join(e.cfg.Dir, "credentials") }
func (e *Embedded) agentDir() string   { return filepath.Join(e.credDir(), "agents") }
func (e *Embedded) serverPath() string { return filepath.Join(e.credDir(), "server.seed") }
func (e *Embedded) agentKeyPath(host string) string {
	return filepath.Join(e.agentDir(), host+".seed")
}

// loadKeys reads (or on first start creates) the server key and every
// agent key. A malformed key file stops the start: silently dropping it
// would lock an agent out, silently accepting it could trust a stray file.
func (e *Embedded) loadKeys() error {
	for _, d := range []string{e.cfg.Dir, e.credDir(), e.agentDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("bus: %w", err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return fmt.Errorf("bus: %w", err)
		}
	}
	seed, err := readSeed(e.serverPath())
	if errors.Is(err, fs.ErrNotExist) {
		kp, kerr := nkeys.CreateUser()
		if kerr != nil {
			return fmt.Errorf("bus: new server key: %w", kerr)
		}
		b, kerr := kp.Seed()
		if kerr != nil {
			return fmt.Errorf("bus: new server key: %w", kerr)
		}
		seed, err = string(b), atomicfile.Write(e.serverPath(), append(b, '\n'), 0o600)
	}
	if err != nil {
		return fmt.Errorf("bus: server key: %w", err)
	}
	e.serverKey = seed

	entries, err := os.ReadDir(e.agentDir())
	if err != nil {
		return fmt.Errorf("bus: %w", err)
	}
	for _, ent := range entries {
		host, ok := strings.CutSuffix(ent.Name(), ".seed")
		if !ok || strings.HasPrefix(ent.Name(), ".") {
			continue // temporary files of an interrupted write
		}
		if err := names.Check("agent host", host); err != nil {
			return fmt.Errorf("bus: agent key file %s: %w", ent.Name(), err)
		}
		seed, err := readSeed(filepath.Join(e.agentDir(), ent.Name()))
		if err != nil {
			return fmt.Errorf("bus: agent key %s: %w", host, err)
		}
		e.agents[host] = seed
	}
	return nil
}

func readSeed(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	seed := strings.TrimSpace(string(b))
	if _, err := userKey(seed); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return seed, nil
}

func publicKey(seed string) (string, error) {
	kp, err := userKey(seed)
	if err != nil {
		return "", err
	}
	return kp.PublicKey()
}

// options builds the complete server configuration from the current key
// set. Reloads pass a fresh copy: nats-server diffs it against the running
// one and applies only the changed users.
func (e *Embedded) options() (*server.Options, error) {
	pub, err := publicKey(e.serverKey)
	if err != nil {
		return nil, fmt.Errorf("bus: server key: %w", err)
	}
	users := []*server.NkeyUser{{Nkey: pub}} // nil permissions: everything
	hosts := make([]string, 0, len(e.agents))
	for h := range e.agents {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts) // stable order, so a reload sees no spurious change
	for _, h := range hosts {
		pub, err := publicKey(e.agents[h])
		if err != nil {
			return nil, fmt.Errorf("bus: agent key %s: %w", h, err)
		}
		perms, err := agentServerPermissions(h)
		if err != nil {
			return nil, err
		}
		users = append(users, &server.NkeyUser{Nkey: pub, Permissions: perms})
	}
	return &server.Options{
		ServerName: "upscale",
		Host:       e.host,
		Port:       e.port,
		NoSigs:     true, // the embedding process owns signals
		MaxPayload: maxPayload,
		JetStream:  true,
		StoreDir:   e.cfg.Dir, // nats-server appends "jetstream"
		Nkeys:      users,
		TLSConfig:  e.tlsConfig,
		// No fallback delay: a client that does not open with TLS gets
		// nothing, rather than a plain-text INFO and a chance to carry on.
		TLSHandshakeFirst: true,
		// Above the 2 s default for agents far away on slow links; still
		// short enough that a stalled handshake frees its slot quickly.
		TLSTimeout: 5,
	}, nil
}

// serverLog adapts nats-server's printf logger to slog.
type serverLog struct {
	l     *slog.Logger
	mu    sync.Mutex
	fatal string
}

func (s *serverLog) fatalOr(def string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fatal != "" {
		return s.fatal
	}
	return def
}

func (s *serverLog) Noticef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s *serverLog) Warnf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.Contains(msg, `"TLS Handshake First"`) {
		// Printed at every start to warn that plain clients cannot
		// connect, which is the point here.
		s.l.Debug(msg)
		return
	}
	s.l.Warn(msg)
}
func (s *serverLog) Errorf(format string, v ...any) { s.l.Error(fmt.Sprintf(format, v...)) }
func (s *serverLog) Debugf(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s *serverLog) Tracef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }

// Fatalf must not exit: this server lives inside `upscale server`. The
// message is kept so StartEmbedded can report why the server is not up.
func (s *serverLog) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	s.l.Error(msg)
	s.mu.Lock()
	if s.fatal == "" {
		s.fatal = msg
	}
	s.mu.Unlock()
}
