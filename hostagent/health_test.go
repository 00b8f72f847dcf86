package hostagent

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/agentapi"
)

func TestParseListeners(t *testing.T) {
	tcp := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0 100 0 0 10 0\n" +
		"   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n" +
		"   2: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 3 1 0 100 0 0 10 0\n" +
		"   3: garbage\n"
	tcp6 := "  sl  local_address                         remote_address                        st\n" +
		"   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000\n" +
		"   1: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000\n"
	got := append(parseListeners([]byte(tcp)), parseListeners([]byte(tcp6))...)
	want := []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.1:8080"), netip.MustParseAddrPort("0.0.0.0:22"),
		netip.MustParseAddrPort("[::1]:8080"), netip.MustParseAddrPort("[::]:80"),
	}
	if !slices.Equal(got, want) {
		t.Fatalf("listeners %v, want %v", got, want)
	}
}

// healthAgent is an agent whose one container, c, is running as this
// test's own process (for its sockets).
func healthAgent(t *testing.T) *Agent {
	rt := newFakeRuntime()
	rt.cs["c"] = &Container{Name: "c", State: "running", PID: os.Getpid()}
	return &Agent{rt: rt, cfg: Config{Log: slog.New(slog.DiscardHandler)}}
}

// A start that cannot get better fails at once, not at the health
// timeout: a health check answering 500 from the start, an app bound to
// loopback only.
func TestHealthFailsFastWhenWaitingCannotHelp(t *testing.T) {
	ctx := context.Background()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }))
	defer srv.Close()
	req := agentapi.StartRequest{HealthTimeout: 30 * time.Second, Health: "/up", ReleaseContainer: agentapi.ReleaseContainer{Name: "c"}}
	err := healthAgent(t).waitHealthy(ctx, req, srv.Listener.Addr().String())
	if err == nil || !strings.HasPrefix(err.Error(), "health check /up answered 500 Internal Server Error for 3s;") {
		t.Errorf("answering 500: %v", err)
	}

	// Bound to 127.0.0.1 only, asked at another address of the host.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	for _, health := range []string{"", "/up"} {
		req.Health = health
		err = healthAgent(t).waitHealthy(ctx, req, net.JoinHostPort("127.0.0.2", port))
		if err == nil || !strings.HasPrefix(err.Error(), "the app listens on port "+port+" on 127.0.0.1 (loopback) only") {
			t.Errorf("health %q, bound to loopback only: %v", health, err)
		}
	}
}

// 503 says "not ready yet": it is waited for, up to the timeout.
func TestHealthWaitsOutServiceUnavailable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }))
	defer srv.Close()
	req := agentapi.StartRequest{HealthTimeout: 4 * time.Second, Health: "/up", ReleaseContainer: agentapi.ReleaseContainer{Name: "c"}}
	err := healthAgent(t).waitHealthy(context.Background(), req, srv.Listener.Addr().String())
	if err == nil || !strings.HasPrefix(err.Error(), "the app was not healthy within 4s: health check /up answered 503") {
		t.Errorf("answering 503: %v", err)
	}
}
