package bus

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// startBusCfg is startBus with a full configuration.
func startBusCfg(t *testing.T, cfg EmbeddedConfig) *Embedded {
	t.Helper()
	cfg.Log = testLog()
	e, err := StartEmbedded(cfg)
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

// connectErr connects expecting a refusal, and reports how long it took.
func connectErr(t *testing.T, c Credentials, timeout time.Duration) (time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	conn, err := Connect(ctx, c, "refused", WithLogger(testLog()))
	if err == nil {
		conn.Close()
		t.Fatalf("Connect(%v) succeeded", c)
	}
	return time.Since(start), err
}

func serverCert(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "tls", "server.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseCertPEM(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ping(t *testing.T, server, agent *Conn, host string) {
	t.Helper()
	subject := AgentSubject(host, "ping")
	stop, err := agent.Handle(subject, func(context.Context, json.RawMessage, func(string)) (any, error) { return "pong", nil })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	var got string
	if err := server.Call(testCtx(t), subject, nil, &got, nil); err != nil || got != "pong" {
		t.Fatalf("Call %s = %q, %v", subject, got, err)
	}
}

// pingOnce connects the server and an agent to e, checks a call goes
// through and closes both, so that shutting e down next leaves no client
// waiting to flush into a bus that is gone.
func pingOnce(t *testing.T, e *Embedded, agent Credentials) {
	t.Helper()
	srv := connect(t, e.ServerCredentials(), "server")
	defer srv.Close()
	a := connect(t, agent, "agent-"+agent.Agent)
	defer a.Close()
	ping(t, srv, a, agent.Agent)
}

func TestAgentsConnectOverTLSWithTheCAFromTheirCredentials(t *testing.T) {
	dir := t.TempDir()
	e := startBus(t, dir, "127.0.0.1:0")
	creds, err := e.AgentCredentials("h1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(creds.URL, "tls://") || creds.CA != e.CA() || e.ServerCredentials().CA != e.CA() {
		t.Fatalf("credentials %v without the CA or the tls scheme", creds)
	}
	// The CA travels through the credentials file, as it does to a host.
	path := filepath.Join(t.TempDir(), "h1.json")
	if err := creds.Write(path); err != nil {
		t.Fatal(err)
	}
	if creds, err = ReadCredentials(path); err != nil {
		t.Fatal(err)
	}
	agent := connect(t, creds, "agent-h1")
	srv := connect(t, e.ServerCredentials(), "server")
	for _, c := range []*Conn{agent, srv} {
		st, err := c.nc.TLSConnectionState()
		if err != nil {
			t.Fatalf("not TLS: %v", err)
		}
		if st.Version != tls.VersionTLS13 || len(st.VerifiedChains) != 1 || len(st.VerifiedChains[0]) != 2 {
			t.Fatalf("TLS %x, chains %d", st.Version, len(st.VerifiedChains))
		}
		if root := st.VerifiedChains[0][1]; root.Subject.CommonName != e.certs.ca.Subject.CommonName || !root.Equal(e.certs.ca) {
			t.Fatalf("verified against %s, want the bus CA", root.Subject)
		}
	}
	ping(t, srv, agent, "h1")

	// Everything under tls/ is the server's alone, the CA key above all.
	if fi, err := os.Stat(filepath.Join(dir, "tls")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("tls dir: %v %v", fi.Mode(), err)
	}
	for _, f := range []string{"ca.pem", "ca.key", "server.pem", "server.key"} {
		if fi, err := os.Stat(filepath.Join(dir, "tls", f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, fi.Mode(), err)
		}
	}
	ca := e.certs.ca
	if !ca.IsCA || ca.PublicKeyAlgorithm != x509.ECDSA || ca.NotAfter.Before(time.Now().Add(19*365*24*time.Hour)) {
		t.Fatalf("CA: IsCA %v, %v, until %v", ca.IsCA, ca.PublicKeyAlgorithm, ca.NotAfter)
	}
}

func TestClientWithAnotherCAIsRefused(t *testing.T) {
	e := startBus(t, t.TempDir(), "127.0.0.1:0")
	other := startBus(t, t.TempDir(), "127.0.0.1:0")
	creds := e.ServerCredentials()
	creds.CA = other.CA()
	took, err := connectErr(t, creds, time.Minute)
	if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "not from the CA in the credentials") {
		t.Fatalf("Connect with another CA: %v, want ErrUntrusted", err)
	}
	// Refused outright, not retried until the context ends.
	if took > 10*time.Second {
		t.Fatalf("refusal took %v", took)
	}
	t.Logf("refused: %v", err)
}

// The server says nothing until the client has started TLS, so a plain
// client gets no INFO, no nonce, nothing to talk to.
func TestPlainTextClientsAreRefused(t *testing.T) {
	e := startBus(t, t.TempDir(), "127.0.0.1:0")
	addr := hostPort(t, e.URL())
	creds := e.ServerCredentials()
	creds.URL, creds.CA = "nats://"+addr, ""
	// The server's own key: only the missing TLS stands in the way. All
	// the client sees is silence, so Connect retries until ctx ends.
	if _, err := connectErr(t, creds, time.Second); errors.Is(err, ErrRevoked) {
		t.Fatalf("plain Connect: %v", err)
	}
	// Without the CA, tls:// means "system roots, INFO first": refused too.
	creds.URL = "tls://" + addr
	connectErr(t, creds, time.Second)

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := conn.Read(make([]byte, 64)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("plain read got %d bytes, %v; want silence", n, err)
	}
	// A plain CONNECT is not TLS: the server hangs up.
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	conn.Write([]byte("CONNECT {}\r\nPING\r\n"))
	if b, err := readAll(conn); bytes.Contains(b, []byte("INFO")) || bytes.Contains(b, []byte("PONG")) || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("plain CONNECT answered %q, %v", b, err)
	}
}

func readAll(c net.Conn) ([]byte, error) {
	var out []byte
	buf := make([]byte, 512)
	for {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out, err
		}
	}
}

// With a CA in the credentials, a server that does not start TLS is
// refused: it may be an impostor on the address the agent dials.
func TestPinnedCARefusesPlainTextServer(t *testing.T) {
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	e := startBus(t, t.TempDir(), "127.0.0.1:0")
	creds := Credentials{URL: srv.ClientURL(), CA: e.CA()}
	took, err := connectErr(t, creds, time.Minute)
	if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "did not answer with TLS") || took > 10*time.Second {
		t.Fatalf("plain-text server with a pinned CA: %v after %v, want ErrUntrusted at once", err, took)
	}
	// Without a CA the same server is fine (external NATS without TLS).
	connect(t, Credentials{URL: srv.ClientURL()}, "plain")
}

// A certificate from the right CA is still refused for a name it does not
// carry.
func TestServerCertificateForOtherNamesIsRefused(t *testing.T) {
	e := startBusCfg(t, EmbeddedConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0", TLSNames: []string{"bus.example.com"}})
	if got := certNames(serverCert(t, e.cfg.Dir)); !slices.Equal(got, []string{"127.0.0.1", "bus.example.com"}) {
		t.Fatalf("SANs %v", got)
	}
	port := strconv.Itoa(e.port)
	for _, host := range []string{"localhost", "127.0.0.2"} {
		creds := e.ServerCredentials()
		creds.URL = "tls://" + net.JoinHostPort(host, port)
		if host == "127.0.0.2" {
			// The server listens on 127.0.0.1 only; route through a
			// listener on 127.0.0.2 to reach it under another name.
			creds.URL = "tls://" + forward(t, "127.0.0.2:0", hostPort(t, e.URL()))
		}
		took, err := connectErr(t, creds, time.Minute)
		if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "does not name the host") || took > 10*time.Second {
			t.Fatalf("dialling %s: %v after %v, want ErrUntrusted at once", creds.URL, err, took)
		}
	}
	connect(t, e.ServerCredentials(), "server")
}

// forward relays TCP connections from a new listener on listen to target.
func forward(t *testing.T, listen, target string) string {
	t.Helper()
	l, err := net.Listen("tcp", listen)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", listen, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { copyConn(u, c) }()
				copyConn(c, u)
			}()
		}
	}()
	return l.Addr().String()
}

func copyConn(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func TestRestartKeepsTheCAAndReissuesOnNameChange(t *testing.T) {
	dir := t.TempDir()
	e1 := startBus(t, dir, "127.0.0.1:0")
	addr := hostPort(t, e1.URL())
	creds, err := e1.AgentCredentials("h1")
	if err != nil {
		t.Fatal(err)
	}
	cert1 := serverCert(t, dir)
	e1.Shutdown()

	// Same names: the same certificate, and old credentials work as is.
	e2 := startBus(t, dir, addr)
	if e2.CA() != creds.CA {
		t.Fatal("CA changed across restart")
	}
	if !serverCert(t, dir).Equal(cert1) {
		t.Fatal("server certificate reissued although nothing changed")
	}
	pingOnce(t, e2, creds)
	e2.Shutdown()

	// New names: a new server certificate from the same CA.
	e3 := startBusCfg(t, EmbeddedConfig{Dir: dir, Listen: addr, TLSNames: []string{"bus.example.com", "10.0.0.5", "localhost"}})
	cert3 := serverCert(t, dir)
	if cert3.Equal(cert1) || e3.CA() != creds.CA {
		t.Fatal("server certificate not reissued, or CA changed")
	}
	if got := certNames(cert3); !slices.Equal(got, []string{"10.0.0.5", "127.0.0.1", "bus.example.com", "localhost"}) {
		t.Fatalf("SANs %v", got)
	}
	pingOnce(t, e3, creds)
	e3.Shutdown()

	// Near expiry: reissued at start.
	sans, err := newSANSet(certNames(cert3))
	if err != nil {
		t.Fatal(err)
	}
	m, err := loadCerts(filepath.Join(dir, "tls"), sans, testLog(), func() time.Time {
		return time.Now().Add(-serverCertLifetime + 20*24*time.Hour)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.issue("test"); err != nil {
		t.Fatal(err)
	}
	if left := time.Until(serverCert(t, dir).NotAfter); left > renewBefore {
		t.Fatalf("test certificate has %v left", left)
	}
	startBusCfg(t, EmbeddedConfig{Dir: dir, Listen: addr, TLSNames: []string{"bus.example.com", "10.0.0.5", "localhost"}})
	if left := time.Until(serverCert(t, dir).NotAfter); left < serverCertLifetime-time.Hour {
		t.Fatalf("after restart the certificate has %v left", left)
	}
	if serverCert(t, dir).CheckSignatureFrom(e3.certs.ca) != nil {
		t.Fatal("reissued by another CA")
	}
}

// A CA that cannot be read stops the start: making a new one would lock
// out every agent without a word.
func TestStartRefusesADamagedCA(t *testing.T) {
	dir := t.TempDir()
	startBus(t, dir, "127.0.0.1:0").Shutdown()
	for _, f := range []string{"ca.pem", "ca.key"} {
		path := filepath.Join(dir, "tls", f)
		good, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		if e, err := StartEmbedded(EmbeddedConfig{Dir: dir, Listen: "127.0.0.1:0", Log: testLog()}); err == nil {
			e.Shutdown()
			t.Fatalf("started with a damaged %s", f)
		}
		if err := os.WriteFile(path, good, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A damaged server certificate is only derived state: reissued.
	if err := os.WriteFile(filepath.Join(dir, "tls", "server.pem"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := startBus(t, dir, "127.0.0.1:0")
	connect(t, e.ServerCredentials(), "server")
}

func TestTLSNamesValidated(t *testing.T) {
	for _, names := range [][]string{{"bus:4222"}, {"*.example.com"}, {""}, {"a..b"}, {"-a.com"}, {"bus_1"}, {"[::1]"}, {strings.Repeat("a", 64)}} {
		if e, err := StartEmbedded(EmbeddedConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0", TLSNames: names, Log: testLog()}); err == nil {
			e.Shutdown()
			t.Errorf("TLSNames %q accepted", names)
		}
	}
	s, err := newSANSet([]string{"Bus.Example.com", "::1", "10.0.0.5", "bus.example.com", "::ffff:10.0.0.5"})
	if err != nil || s.String() != "10.0.0.5,::1,bus.example.com" {
		t.Fatalf("newSANSet = %s, %v", s, err)
	}
}

// A server that runs past its certificate's renewal time renews it at the
// next handshake instead of waiting for a restart.
func TestServerCertificateRenewsWhileRunning(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	clock := func() time.Time { return now }
	sans, err := newSANSet([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := loadCerts(dir, sans, testLog(), func() time.Time { return clock() })
	if err != nil {
		t.Fatal(err)
	}
	first, err := m.getCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := m.getCertificate(nil); again != first {
		t.Fatal("renewed a fresh certificate")
	}
	later := now.Add(serverCertLifetime - renewBefore + time.Hour)
	clock = func() time.Time { return later }
	renewed, err := m.getCertificate(nil)
	if err != nil || renewed == first || !renewed.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Fatalf("not renewed: %v", err)
	}
	onDisk, err := os.ReadFile(filepath.Join(dir, "server.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if c, err := parseCertPEM(string(onDisk)); err != nil || !c.Equal(renewed.Leaf) {
		t.Fatalf("renewed certificate not stored: %v", err)
	}
}

// Listening on every interface with a network address advertised: agents
// get the advertised address, the server itself dials 127.0.0.1, and the
// certificate is good for both.
func TestListenAllAdvertiseNetworkAddress(t *testing.T) {
	// 127.0.0.2 stands in for the host's network address: it is not the
	// address the server dials, and a 0.0.0.0 listener answers on it.
	port := freePort(t)
	e := startBusCfg(t, EmbeddedConfig{Dir: t.TempDir(), Listen: "0.0.0.0:" + port, Advertise: "127.0.0.2:" + port})
	if e.URL() != "tls://127.0.0.1:"+port {
		t.Fatalf("URL %s", e.URL())
	}
	creds, err := e.AgentCredentials("h1")
	if err != nil {
		t.Fatal(err)
	}
	if creds.URL != "tls://127.0.0.2:"+port {
		t.Fatalf("agent URL %s", creds.URL)
	}
	if got := certNames(serverCert(t, e.cfg.Dir)); !slices.Equal(got, []string{"127.0.0.1", "127.0.0.2", "localhost"}) {
		t.Fatalf("SANs %v", got)
	}
	agent := connect(t, creds, "agent-h1")
	if u := agent.nc.ConnectedUrl(); u != creds.URL {
		t.Fatalf("agent connected to %s", u)
	}
	srv := connect(t, e.ServerCredentials(), "server")
	ping(t, srv, agent, "h1")

	// The address a real deployment would use, which this machine may
	// not have: only the credentials are checked.
	e2 := startBusCfg(t, EmbeddedConfig{Dir: t.TempDir(), Listen: "0.0.0.0:0", Advertise: "10.0.0.5:4222"})
	creds2, err := e2.AgentCredentials("h1")
	if err != nil || creds2.URL != "tls://10.0.0.5:4222" {
		t.Fatalf("agent credentials %v, %v", creds2, err)
	}
	if got := certNames(serverCert(t, e2.cfg.Dir)); !slices.Contains(got, "10.0.0.5") || !slices.Contains(got, "127.0.0.1") {
		t.Fatalf("SANs %v", got)
	}
	connect(t, e2.ServerCredentials(), "server")
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

func TestRemovedAgentLearnsItWasRevoked(t *testing.T) {
	e := newEnv(t)
	creds, err := e.bus.AgentCredentials("h1")
	if err != nil {
		t.Fatal(err)
	}
	if e.agent.Err() != nil {
		t.Fatalf("Err on a live connection: %v", e.agent.Err())
	}
	start := time.Now()
	if err := e.bus.RemoveAgent("h1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.agent.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed 10 s after RemoveAgent")
	}
	t.Logf("revocation noticed after %v", time.Since(start))
	if err := e.agent.Err(); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Err = %v, want ErrRevoked", err)
	}
	e.agent.Close()
	if err := e.agent.Err(); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Err after Close = %v, want ErrRevoked to stick", err)
	}
	took, err := connectErr(t, creds, time.Minute)
	if !errors.Is(err, ErrRevoked) || !errors.Is(err, nats.ErrAuthorization) || took > 10*time.Second {
		t.Fatalf("reconnect: %v after %v, want ErrRevoked at once", err, took)
	}
	// The server's own connection is untouched.
	select {
	case <-e.server.Done():
		t.Fatalf("server connection ended: %v", e.server.Err())
	default:
	}
}

// Done is for endings, not outages: a bus restart leaves it open and the
// connection comes back.
func TestDoneStaysOpenAcrossBusRestart(t *testing.T) {
	dir := t.TempDir()
	e1 := startBus(t, dir, "127.0.0.1:0")
	addr := hostPort(t, e1.URL())
	creds, err := e1.AgentCredentials("h1")
	if err != nil {
		t.Fatal(err)
	}
	agent := connect(t, creds, "agent-h1")
	e1.Shutdown()
	time.Sleep(1500 * time.Millisecond)
	e2 := startBus(t, dir, addr)
	srv := connect(t, e2.ServerCredentials(), "server")
	for deadline := time.Now().Add(30 * time.Second); !agent.nc.IsConnected(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("agent did not reconnect: %v", agent.Err())
		}
	}
	ping(t, srv, agent, "h1")
	select {
	case <-agent.Done():
		t.Fatalf("Done closed by a restart: %v", agent.Err())
	default:
	}
	agent.Close()
	<-agent.Done()
	if !errors.Is(agent.Err(), ErrClosed) {
		t.Fatalf("Err after Close = %v", agent.Err())
	}
}
