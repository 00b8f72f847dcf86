package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	closed   bool // Close was called: the connection ending is not news

	bucketMu sync.Mutex
	bucket   jetstream.ObjectStore

	closeOnce sync.Once
}

// Connect dials the bus and returns once connected. While the bus is
// unreachable it keeps trying until ctx ends; a refused identity fails at
// once, since retrying cannot fix it. Once connected the Conn reconnects
// forever on its own.
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
			if !requested {
				// Only after repeated authentication failures (revoked
				// credentials): nothing will bring this Conn back.
				c.log.Error("bus connection closed for good", "err", nc.LastError())
			}
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

	wait := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		nc, err := nats.Connect(creds.URL, nopts...)
		if err == nil {
			c.nc = nc
			break
		}
		if isAuthError(err) {
			return nil, fmt.Errorf("bus %s: %w", creds.URL, err)
		}
		c.log.Warn("bus unreachable, retrying", "url", creds.URL, "attempt", attempt, "err", err)
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
