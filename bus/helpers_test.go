package bus

import (
	"context"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testLog is silent unless UPSCALE_TEST_LOG is set: nats-server logs from
// its own goroutines, which must not reach t.Log after a test ends.
func testLog() *slog.Logger {
	if os.Getenv("UPSCALE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startBus starts an embedded server in dir on listen ("127.0.0.1:0" for a
// free port) and shuts it down at the end of the test.
func startBus(t *testing.T, dir, listen string) *Embedded {
	t.Helper()
	e, err := StartEmbedded(EmbeddedConfig{Dir: dir, Listen: listen, Log: testLog()})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

func connect(t *testing.T, c Credentials, name string, opts ...Option) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := Connect(ctx, c, name, append([]Option{WithLogger(testLog())}, opts...)...)
	if err != nil {
		t.Fatalf("Connect(%v): %v", c, err)
	}
	t.Cleanup(conn.Close)
	return conn
}

// testCtx bounds a test's waits so a bug fails the test instead of hanging
// the suite; it is not a timing assertion.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// hostPort is the address part of a bus URL.
func hostPort(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		t.Fatalf("bus URL %q: %v", rawURL, err)
	}
	return u.Host
}

type env struct {
	bus    *Embedded
	server *Conn
	agent  *Conn // agent h1
}

func newEnv(t *testing.T) env {
	t.Helper()
	e := startBus(t, t.TempDir(), "127.0.0.1:0")
	creds, err := e.AgentCredentials("h1")
	if err != nil {
		t.Fatal(err)
	}
	return env{
		bus:    e,
		server: connect(t, e.ServerCredentials(), "server"),
		agent:  connect(t, creds, "agent-h1"),
	}
}

func TestStartEmbeddedReportsBusyPort(t *testing.T) {
	e := startBus(t, t.TempDir(), "127.0.0.1:0")
	addr := hostPort(t, e.URL())
	_, err := StartEmbedded(EmbeddedConfig{Dir: t.TempDir(), Listen: addr, Log: testLog()})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("second server on %s: %v, want address in use", addr, err)
	}
}

func TestStartEmbeddedRejectsBadConfig(t *testing.T) {
	for _, cfg := range []EmbeddedConfig{
		{},
		{Dir: t.TempDir(), Listen: "nocolon"},
		{Dir: t.TempDir(), Listen: "127.0.0.1:99999"},
		{Dir: t.TempDir(), Listen: "127.0.0.1:0", Advertise: "bad host:1"},
	} {
		if e, err := StartEmbedded(cfg); err == nil {
			e.Shutdown()
			t.Errorf("StartEmbedded(%+v) accepted", cfg)
		}
	}
}

// A key file that does not parse stops the start rather than locking an
// agent out silently.
func TestStartEmbeddedRejectsCorruptKeys(t *testing.T) {
	dir := t.TempDir()
	e := startBus(t, dir, "127.0.0.1:0")
	if _, err := e.AgentCredentials("h1"); err != nil {
		t.Fatal(err)
	}
	e.Shutdown()
	if err := os.WriteFile(filepath.Join(dir, "credentials", "agents", "h1.seed"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if e, err := StartEmbedded(EmbeddedConfig{Dir: dir, Listen: "127.0.0.1:0", Log: testLog()}); err == nil {
		e.Shutdown()
		t.Fatal("started with a corrupt agent key")
	}
	fi, err := os.Stat(filepath.Join(dir, "credentials"))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("credentials dir mode %v, %v; want 0700", fi.Mode().Perm(), err)
	}
}
