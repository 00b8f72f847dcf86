package gitd

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/upscalehq/upscale/keys"
)

func withLimits(l Limits) func(*Config) { return func(c *Config) { c.Limits = l } }

// closedByServer reads c until the server closes it; a read that times out
// instead means the server still holds the connection.
func closedByServer(c net.Conn, wait time.Duration) error {
	c.SetReadDeadline(time.Now().Add(wait))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errors.New("still open")
	}
	return nil
}

func silentConns(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	var out []net.Conn
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		out = append(out, c)
	}
	return out
}

// waitAccepted waits until the server has taken up every connection: it
// greets each with its version line, or has already closed it (a cap). A
// real client that came earlier would be among the oldest, and the flood
// behind it would push it out: the floods tested come first.
func waitAccepted(t *testing.T, conns []net.Conn) {
	t.Helper()
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 1)
		for {
			_, err := c.Read(b)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection %d: the server neither greeted nor closed it", i)
			}
			if err != nil || b[0] == '\n' {
				break
			}
		}
		c.SetReadDeadline(time.Time{})
	}
}

// 300 silent connections (found holding the server for its 10-minute idle
// timeout) are closed once the login grace time is over, and a real client
// gets in meanwhile.
func TestSilentConnectionsAreClosed_regression(t *testing.T) {
	r := newRig(t, withLimits(Limits{LoginGrace: 500 * time.Millisecond}))
	admin := r.addKey(t, "admin", keys.RoleAdmin, "")
	silent := silentConns(t, r.addr, 300)
	waitAccepted(t, silent)
	c, err := r.dial(gossh.PublicKeys(admin))
	if err != nil {
		t.Fatalf("a real client could not log in next to 300 silent connections: %v", err)
	}
	defer c.Close()
	if out, _, code := runCmd(t, c, "app list", nil); code != 0 || out != "admin ran app list\n" {
		t.Fatalf("app list: exit %d %q", code, out)
	}
	for i, s := range silent {
		if err := closedByServer(s, 10*time.Second); err != nil {
			t.Fatalf("silent connection %d: %v", i, err)
		}
	}
	// An authenticated connection outlives the grace time.
	if out, _, code := runCmd(t, c, "app list", nil); code != 0 || out != "admin ran app list\n" {
		t.Fatalf("app list after the grace time: exit %d %q", code, out)
	}
}

// Over the per-source cap, the oldest unauthenticated connections go first.
func TestStartupsPerSourceCap(t *testing.T) {
	r := newRig(t, withLimits(Limits{LoginGrace: time.Hour, MaxStartupsPerSource: 10}))
	silent := silentConns(t, r.addr, 12)
	waitAccepted(t, silent)
	// The server takes connections up concurrently, so which two were
	// oldest to it is its business; that two went and ten stay is not.
	closed := 0
	for _, s := range silent {
		if closedByServer(s, 300*time.Millisecond) == nil {
			closed++
		}
	}
	if closed != 2 {
		t.Errorf("%d of 12 unauthenticated connections from one source closed, want 2 (cap 10)", closed)
	}
}

// A client trickling its handshake a byte at a time was never cut.
func TestTrickleIsCut_regression(t *testing.T) {
	r := newRig(t, withLimits(Limits{LoginGrace: 500 * time.Millisecond}))
	c := silentConns(t, r.addr, 1)[0]
	closed := make(chan error, 1)
	go func() { closed <- closedByServer(c, 20*time.Second) }()
	hello := []byte("SSH-2.0-trickle\r\n")
	for i := 0; ; i++ {
		select {
		case err := <-closed:
			if err != nil {
				t.Fatal(err)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := c.Write(hello[i%len(hello) : i%len(hello)+1]); err != nil {
			return // closed
		}
	}
}

func TestSessionsPerConnection(t *testing.T) {
	r := newRig(t, withLimits(Limits{MaxSessions: 3}))
	c, err := r.dial(gossh.PublicKeys(r.addKey(t, "admin", keys.RoleAdmin, "")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var open []*gossh.Session
	for range 3 {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, s)
	}
	if _, err := c.NewSession(); err == nil || !strings.Contains(err.Error(), "too many sessions on one connection") {
		t.Fatalf("4th session: %v; want it refused", err)
	}
	open[0].Close()
	// The slot frees once the server has seen the close.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := c.NewSession()
		if err == nil {
			s.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session after one closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Every env request was kept (2,000 of 30 KiB grew the heap by 62 MiB):
// only GIT_PROTOCOL is accepted now, once.
func TestEnvRequests_regression(t *testing.T) {
	r := newRig(t)
	c, err := r.dial(gossh.PublicKeys(r.addKey(t, "admin", keys.RoleAdmin, "")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out, _, code := runCmd(t, c, "env", func(s *gossh.Session) {
		big := strings.Repeat("x", 30<<10)
		for i := range 2000 {
			if err := s.Setenv("FLOOD", big); err == nil {
				t.Fatalf("env request %d accepted", i)
			}
		}
		if err := s.Setenv("GIT_PROTOCOL", "version=2"); err != nil {
			t.Fatalf("GIT_PROTOCOL refused: %v", err)
		}
		if err := s.Setenv("GIT_PROTOCOL", "version=1"); err == nil {
			t.Fatal("a second GIT_PROTOCOL accepted")
		}
	})
	if code != 0 || out != "GIT_PROTOCOL=version=2\n" {
		t.Fatalf("env: exit %d %q", code, out)
	}
}

// A command that prints nothing for longer than the idle timeout lives as
// long as its client answers the server's keepalives.
func TestKeepAliveKeepsSilentSessions(t *testing.T) {
	r := newRig(t, withLimits(Limits{KeepAlive: 100 * time.Millisecond}), func(c *Config) { c.IdleTimeout = 400 * time.Millisecond })
	c, err := r.dial(gossh.PublicKeys(r.addKey(t, "admin", keys.RoleAdmin, "")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if out, _, code := runCmd(t, c, "sleep 2s", nil); code != 0 || out != "admin ran sleep 2s\n" {
		t.Fatalf("a silent 2 s command under a 400 ms idle timeout: exit %d %q", code, out)
	}
}

func TestKeyLookupsPacedPerSource(t *testing.T) {
	g := newGate(Limits{KeyLookups: 5})
	now := time.Now()
	a := g.limiter("10.0.0.1")
	for i := range 5 {
		if d := a.ReserveN(now, 1).DelayFrom(now); d != 0 {
			t.Fatalf("lookup %d of a burst of 5 waits %v", i, d)
		}
	}
	if d := a.ReserveN(now, 1).DelayFrom(now); d <= 0 {
		t.Fatalf("6th lookup in the same instant does not wait")
	}
	if d := g.limiter("10.0.0.2").ReserveN(now, 1).DelayFrom(now); d != 0 {
		t.Fatalf("another source waits %v", d)
	}
	if g.limiter("10.0.0.1") != a {
		t.Fatal("a source's limiter was not kept")
	}
}

func TestSource(t *testing.T) {
	for in, want := range map[string]string{
		"10.1.2.3:2222":                  "10.1.2.3",
		"[::ffff:10.1.2.3]:1":            "10.1.2.3",
		"[2001:db8:1:2:3:4:5:6]:22":      "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff:4:5:6]:2222": "2001:db8:1:2::/64",
	} {
		addr, err := net.ResolveTCPAddr("tcp", in)
		if err != nil {
			t.Fatal(err)
		}
		if got := source(addr); got != want {
			t.Errorf("source(%s) = %s, want %s", in, got, want)
		}
	}
}
