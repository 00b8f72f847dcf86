package bus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultSilenceTimeout is how long Call waits without any frame (reply,
// progress or keepalive) before it gives up on the other side.
const DefaultSilenceTimeout = 15 * time.Second

var (
	// ErrPermissionDenied is wrapped by every error caused by the bus
	// refusing a publish or a subscription under this connection's grants.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrNoAnswer is wrapped when nothing handles a subject, or the
	// handler fell silent for longer than the silence timeout.
	ErrNoAnswer = errors.New("no answer")
	// ErrRevoked is wrapped when the bus refuses these credentials: at
	// Connect, or later as Conn.Err once the server has cut the connection
	// and refused it again. The key was removed (RemoveAgent) or never
	// issued by this bus; no retry will help, so an agent should stop
	// rather than be restarted.
	ErrRevoked = errors.New("credentials refused by the bus (revoked or never issued)")
	// ErrUntrusted is wrapped when Connect cannot verify the server: its
	// certificate does not chain to the credentials' CA or does not name
	// the host dialled, or it answered in plain text although the
	// credentials pin a CA. Retrying does not fix any of these either.
	ErrUntrusted = errors.New("bus server not trusted")
	// ErrClosed is Conn.Err after Close.
	ErrClosed = errors.New("bus connection closed")
)

// Option tunes a Conn.
type Option func(*connOptions)

type connOptions struct {
	log     *slog.Logger
	silence time.Duration
}

// WithLogger sets where connection events (disconnects, reconnects,
// permission violations) are logged. Default: slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *connOptions) { o.log = l } }

// WithSilenceTimeout sets how long Call waits for the next frame before
// failing; tests use a short one. Handlers send keepalives at a third of the
// caller's timeout, so only a dead or wedged handler trips it.
func WithSilenceTimeout(d time.Duration) Option {
	return func(o *connOptions) {
		if d > 0 {
			o.silence = d
		}
	}
}

// Conn is a connection to the bus. It is safe for concurrent use.
type Conn struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	log     *slog.Logger
	silence time.Duration

	mu       sync.Mutex
	watches  map[*denialWatch]struct{}
	handlers map[*handler]struct{}
	closed   bool  // Close was called: the connection ending is not news
	err      error // why done is closed

	done     chan struct{}
	doneOnce sync.Once

	bucketMu sync.Mutex
	bucket   jetstream.ObjectStore

	closeOnce sync.Once
}

// Connect dials the bus and returns once connected. While the bus is
// unreachable it keeps trying until ctx ends; refused credentials
// (ErrRevoked) and a server that fails verification (ErrUntrusted) fail at
// once, since retrying cannot fix them. Once connected the Conn reconnects
// on its own until Close, or until the server refuses its credentials
// (see Done).
func Connect(ctx context.Context, creds Credentials, name string, opts ...Option) (*Conn, error) {
	if err := creds.validate(); err != nil {
		return nil, err
	}
	o := connOptions{log: slog.Default(), silence: DefaultSilenceTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	c := &Conn{
		log:      o.log.With("bus", name),
		silence:  o.silence,
		watches:  map[*denialWatch]struct{}{},
		handlers: map[*handler]struct{}{},
		done:     make(chan struct{}),
	}
	nopts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		// Faster than the 2-minute default, so a host whose network
		// died is noticed (and its calls fail) within half a minute.
		nats.PingInterval(10 * time.Second),
		nats.MaxPingsOutstanding(2),
		// Makes a refused subscription visible to NextMsg, which is how
		// Handle and Call report it instead of waiting forever.
		nats.PermissionErrOnSubscribe(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				c.log.Warn("bus disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.log.Info("bus reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			c.mu.Lock()
			requested := c.closed
			c.mu.Unlock()
			if requested {
				return // Close reports it
			}
			// nats.go gives up only when the server refused the
			// credentials twice in a row (a revoked key: the server cuts
			// the connection, then refuses the reconnect) or sent an
			// error it does not know: nothing will bring this Conn back.
			err := nc.LastError()
			switch {
			case isAuthError(err):
				err = fmt.Errorf("%w: %w", ErrRevoked, err)
			case err == nil:
				err = errors.New("bus connection closed by the server")
			default:
				err = fmt.Errorf("bus connection closed for good: %w", err)
			}
			c.log.Error("bus connection closed for good", "err", err)
			c.finish(err)
		}),
		nats.ErrorHandler(c.asyncError),
	}
	switch {
	case creds.NKey != "":
		kp, err := userKey(creds.NKey)
		if err != nil {
			return nil, err
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, err
		}
		nopts = append(nopts, nats.Nkey(pub, kp.Sign))
	case creds.User != "":
		nopts = append(nopts, nats.UserInfo(creds.User, creds.Password))
	}
	if creds.Agent != "" {
		nopts = append(nopts, nats.CustomInboxPrefix(agentInbox(creds.Agent)))
	}
	if creds.CA != "" {
		ca, err := parseCertPEM(creds.CA)
		if err != nil {
			return nil, fmt.Errorf("credentials: ca: %w", err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(ca)
		// RootCAs holds the CA alone, so a certificate from any public CA
		// is refused. ServerName stays empty: nats.go sets it per dial to
		// the URL's host, which the certificate must then name.
		// Handshake first matches the embedded server, and means this
		// client never reads a byte the server sent in clear.
		nopts = append(nopts, nats.Secure(&tls.Config{RootCAs: roots}), nats.TLSHandshakeFirst())
	}

	wait := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		nc, err := nats.Connect(creds.URL, nopts...)
		if err == nil {
			c.nc = nc
			break
		}
		if isAuthError(err) {
			return nil, fmt.Errorf("bus %s: %w: %w", creds.URL, ErrRevoked, err)
		}
		if why := untrusted(err); why != "" {
			return nil, fmt.Errorf("bus %s: %w: %s: %w", creds.URL, ErrUntrusted, why, err)
		}
		if creds.CA == "" && (errors.Is(err, nats.ErrTimeout) || errors.Is(err, os.ErrDeadlineExceeded)) {
			// What a TLS-first server looks like to a plain-text client:
			// it waits for a ClientHello that never comes.
			c.log.Warn("bus unreachable, retrying; if the bus requires TLS, the credentials lack its CA",
				"url", creds.URL, "attempt", attempt, "err", err)
		} else {
			c.log.Warn("bus unreachable, retrying", "url", creds.URL, "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("bus %s: %w (last error: %v)", creds.URL, context.Cause(ctx), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
	js, err := jetstream.New(c.nc)
	if err != nil {
		c.nc.Close()
		return nil, fmt.Errorf("bus: %w", err)
	}
	c.js = js
	return c, nil
}

func isAuthError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired)
}

// untrusted says why err means the server failed verification, or "" when
// it is some other error (one a retry may cure).
func untrusted(err error) string {
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		record   tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknown):
		return "its certificate is not from the CA in the credentials"
	case errors.As(err, &hostname):
		return "its certificate does not name the host in the URL"
	case errors.As(err, &invalid):
		return "its certificate is not valid (expired? clocks?)"
	case errors.As(err, &verify):
		return "its certificate does not verify"
	case errors.As(err, &record):
		// The bytes a TLS-first client got back were not TLS: INFO from a
		// plain-text server, or from a TLS server that expects TLS only
		// after INFO (nats-server without tls { handshake_first: true }).
		return "it did not answer with TLS"
	case errors.Is(err, nats.ErrSecureConnWanted):
		return "it does not offer TLS"
	}
	return ""
}

// Done is closed when the connection has ended for good: after Close, or
// when the server refused its credentials on reconnecting, which is how a
// revocation (RemoveAgent) reaches a connected agent. Err then says which.
// While the bus is merely unreachable, Done stays open: the Conn keeps
// reconnecting.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is nil until Done is closed; then ErrClosed after Close, an error
// wrapping ErrRevoked when the bus refused the credentials, or another
// error when the server ended the connection with one nats.go cannot
// recover from. The first cause sticks: Close after a revocation leaves
// ErrRevoked.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Conn) finish(err error) {
	c.doneOnce.Do(func() {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		close(c.done)
	})
}

// Close stops every handler of this connection, waits for the running
// calls to send their last frame, then closes the connection.
func (c *Conn) Close() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		hs := make([]*handler, 0, len(c.handlers))
		for h := range c.handlers {
			hs = append(hs, h)
		}
		c.mu.Unlock()
		for _, h := range hs {
			h.stop()
		}
		_ = c.nc.FlushTimeout(5 * time.Second) // last frames out before the socket closes
		c.nc.Close()
		c.finish(ErrClosed)
	})
}

// permViolation extracts operation and subject from the server's text,
// e.g. `Permissions Violation for Publish to "upscale.agent.h2.x"`.
var permViolation = regexp.MustCompile(`(?i)permissions violation for (publish|subscription) (?:to|with reply of) "([^"]*)"`)

// denialWatch ends an in-flight operation when the server refuses one of
// its subjects. Publishes are fire-and-forget in NATS: the refusal comes
// back only as an asynchronous error, and without this the operation would
// sit until its own timeout and then report a misleading "timeout".
type denialWatch struct {
	match  func(subject string) bool
	cancel context.CancelCauseFunc
}

func (c *Conn) watchDenials(ctx context.Context, match func(string) bool) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &denialWatch{match: match, cancel: cancel}
	c.mu.Lock()
	c.watches[w] = struct{}{}
	c.mu.Unlock()
	return ctx, func() {
		c.mu.Lock()
		delete(c.watches, w)
		c.mu.Unlock()
		cancel(nil)
	}
}

// denied returns the permission error that ended ctx, if that is why it
// ended.
func denied(ctx context.Context) error {
	if cause := context.Cause(ctx); errors.Is(cause, ErrPermissionDenied) {
		return cause
	}
	return nil
}

func (c *Conn) asyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		subj := ""
		if sub != nil {
			subj = sub.Subject
		}
		c.log.Warn("bus error", "subject", subj, "err", err)
		return
	}
	m := permViolation.FindStringSubmatch(err.Error())
	if m == nil {
		c.log.Warn("bus permission violation", "err", err)
		return
	}
	op, subject := strings.ToLower(m[1]), m[2]
	c.log.Warn("bus permission violation", "op", op, "subject", subject)
	perr := fmt.Errorf("%w: %s to %q", ErrPermissionDenied, op, subject)
	c.mu.Lock()
	defer c.mu.Unlock()
	for w := range c.watches {
		if w.match(subject) {
			w.cancel(perr)
		}
	}
}

// subscribeChecked subscribes synchronously and returns only once the
// server has accepted the subscription, so a refusal is an error here and
// not a handler that silently never runs. A message that already arrived is
// returned for the caller to process.
func (c *Conn) subscribeChecked(subject, queue string) (*nats.Subscription, *nats.Msg, error) {
	var sub *nats.Subscription
	var err error
	if queue == "" {
		sub, err = c.nc.SubscribeSync(subject)
	} else {
		sub, err = c.nc.QueueSubscribeSync(subject, queue)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	// -ERR for the SUB arrives before the PONG, and nats.go records it on
	// the subscription synchronously in its read loop.
	if err := c.nc.Flush(); err != nil {
		sub.Unsubscribe()
		return nil, nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	msg, err := sub.NextMsg(0)
	switch {
	case err == nil:
		return sub, msg, nil
	case errors.Is(err, nats.ErrTimeout):
		return sub, nil, nil
	case errors.Is(err, nats.ErrPermissionViolation):
		sub.Unsubscribe()
		return nil, nil, fmt.Errorf("%w: subscription to %q", ErrPermissionDenied, subject)
	default:
		sub.Unsubscribe()
		return nil, nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
}
