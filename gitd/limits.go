package gitd

import (
	"container/list"
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/time/rate"
)

// Limits bound what one client can make the SSH server hold, after
// OpenSSH's LoginGraceTime, MaxStartups, PerSourceMaxStartups, MaxSessions,
// AcceptEnv and ClientAliveInterval. Zero fields take the defaults.
type Limits struct {
	// LoginGrace closes a connection that has not authenticated by then
	// (default 20 s), however slowly it keeps sending.
	LoginGrace time.Duration
	// MaxStartups is how many connections may be unauthenticated at
	// once (default 100); MaxStartupsPerSource the same per source
	// address (default 10; an IPv6 source is its /64). A new connection
	// over either cap closes the oldest unauthenticated one, so a flood of
	// silent connections cannot lock a real client out.
	MaxStartups, MaxStartupsPerSource int
	// MaxSessions is how many sessions one connection may have open at
	// once (default 10).
	MaxSessions int
	// KeyLookups is how many public keys per second one source may have
	// looked up (default 50, in bursts of as many): more wait their turn.
	KeyLookups float64
	// KeepAlive is the interval of the server's keepalives to a client
	// with a session open (default 15 s): their answers keep a silent but
	// live session from the idle timeout, and a client that answers none
	// of 3 is gone.
	KeepAlive time.Duration
}

// maxLimiters bounds the per-source lookup limiters kept: a flood from
// many addresses starts them afresh rather than growing the map.
const maxLimiters = 10000

const keepAliveMisses = 3

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxStartups, 100)
	def(&l.MaxStartupsPerSource, 10)
	def(&l.MaxSessions, 10)
	if l.LoginGrace <= 0 {
		l.LoginGrace = 20 * time.Second
	}
	if l.KeyLookups <= 0 {
		l.KeyLookups = 50
	}
	if l.KeepAlive <= 0 {
		l.KeepAlive = 15 * time.Second
	}
	return l
}

// gate applies Limits to the connections of one server.
type gate struct {
	lim Limits

	mu       sync.Mutex
	pending  *list.List // of *client not yet authenticated, oldest first
	bySource map[string]int
	lookups  map[string]*rate.Limiter
}

// client is one connection as the gate sees it.
type client struct {
	conn     net.Conn
	source   string
	elem     *list.Element // in gate.pending while unauthenticated
	timer    *time.Timer
	sessions int // open sessions; under gate.mu
	keepOnce sync.Once
}

type ctxKeyClient struct{}

func newGate(lim Limits) *gate {
	return &gate{lim: lim.withDefaults(), pending: list.New(), bySource: map[string]int{}, lookups: map[string]*rate.Limiter{}}
}

// source is the address a limit counts by.
func source(a net.Addr) string {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return a.String()
	}
	ip := ap.Addr().Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// accept admits a new connection, closing the oldest unauthenticated ones
// over the caps, and closes it in turn when it has not authenticated
// within the grace time.
func (g *gate) accept(ctx ssh.Context, conn net.Conn) net.Conn {
	c := &client{conn: conn, source: source(conn.RemoteAddr())}
	var evict []*client
	g.mu.Lock()
	if g.bySource[c.source] >= g.lim.MaxStartupsPerSource {
		for e := g.pending.Front(); e != nil; e = e.Next() {
			if old := e.Value.(*client); old.source == c.source {
				evict = append(evict, g.forget(old))
				break
			}
		}
	}
	if g.pending.Len() >= g.lim.MaxStartups {
		evict = append(evict, g.forget(g.pending.Front().Value.(*client)))
	}
	c.elem = g.pending.PushBack(c)
	g.bySource[c.source]++
	c.timer = time.AfterFunc(g.lim.LoginGrace, func() {
		g.mu.Lock()
		late := c.elem != nil
		g.mu.Unlock()
		if late {
			conn.Close()
		}
	})
	g.mu.Unlock()
	for _, old := range evict {
		old.conn.Close()
	}
	ctx.SetValue(ctxKeyClient{}, c)
	go func() {
		<-ctx.Done() // the connection is closed
		c.timer.Stop()
		g.mu.Lock()
		if c.elem != nil {
			g.forget(c)
		}
		g.mu.Unlock()
	}()
	return conn
}

// forget takes c off the pending list; the caller holds g.mu.
func (g *gate) forget(c *client) *client {
	g.pending.Remove(c.elem)
	c.elem = nil
	if g.bySource[c.source]--; g.bySource[c.source] <= 0 {
		delete(g.bySource, c.source)
	}
	return c
}

// authenticated is called once the client proved a key.
func (g *gate) authenticated(ctx ssh.Context) {
	c, ok := ctx.Value(ctxKeyClient{}).(*client)
	if !ok {
		return
	}
	c.timer.Stop()
	g.mu.Lock()
	if c.elem != nil {
		g.forget(c)
	}
	g.mu.Unlock()
}

// waitLookup paces key lookups per source.
func (g *gate) waitLookup(ctx context.Context, addr net.Addr) error {
	return g.limiter(source(addr)).Wait(ctx)
}

func (g *gate) limiter(src string) *rate.Limiter {
	g.mu.Lock()
	defer g.mu.Unlock()
	l, ok := g.lookups[src]
	if !ok {
		if len(g.lookups) >= maxLimiters {
			clear(g.lookups)
		}
		burst := max(1, int(g.lim.KeyLookups))
		l = rate.NewLimiter(rate.Limit(g.lim.KeyLookups), burst)
		g.lookups[src] = l
	}
	return l
}

// sessionHandler caps the sessions of a connection, keeps only the
// environment variable git needs, and starts the keepalives.
func (g *gate) sessionHandler(srv *ssh.Server, conn *gossh.ServerConn, nc gossh.NewChannel, ctx ssh.Context) {
	c, ok := ctx.Value(ctxKeyClient{}).(*client)
	if !ok {
		nc.Reject(gossh.ConnectionFailed, "no client")
		return
	}
	g.mu.Lock()
	full := c.sessions >= g.lim.MaxSessions
	if !full {
		c.sessions++
	}
	g.mu.Unlock()
	if full {
		nc.Reject(gossh.ResourceShortage, "too many sessions on one connection")
		return
	}
	defer func() {
		g.mu.Lock()
		c.sessions--
		g.mu.Unlock()
	}()
	c.keepOnce.Do(func() { go g.keepAlive(ctx, conn) })
	ssh.DefaultSessionHandler(srv, conn, envFilter{nc}, ctx)
}

// keepAlive asks the client for an answer every interval; the answer is
// traffic, which resets the idle timeout. A client that answers none of
// keepAliveMisses in a row is cut.
func (g *gate) keepAlive(ctx context.Context, conn *gossh.ServerConn) {
	t := time.NewTicker(g.lim.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		answered := make(chan error, 1)
		go func() {
			_, _, err := conn.SendRequest("keepalive@openssh.com", true, nil)
			answered <- err
		}()
		select {
		case err := <-answered:
			if err != nil {
				return
			}
		case <-time.After(keepAliveMisses * g.lim.KeepAlive):
			conn.Close()
			return
		case <-ctx.Done():
			return
		}
	}
}

// envFilter keeps the first GIT_PROTOCOL a session sends and refuses every
// other env request before gliderlabs stores it: it keeps them all, so a
// client could grow the server's memory at will.
type envFilter struct{ gossh.NewChannel }

func (f envFilter) Accept() (gossh.Channel, <-chan *gossh.Request, error) {
	ch, in, err := f.NewChannel.Accept()
	if err != nil {
		return ch, in, err
	}
	out := make(chan *gossh.Request)
	go func() {
		defer close(out)
		kept := false
		for req := range in {
			if req.Type == "env" {
				var kv struct{ Name, Value string }
				if kept || gossh.Unmarshal(req.Payload, &kv) != nil || kv.Name != "GIT_PROTOCOL" || len(kv.Value) > 64 {
					if req.WantReply {
						req.Reply(false, nil)
					}
					continue
				}
				kept = true
			}
			out <- req
		}
	}()
	return ch, out, nil
}
