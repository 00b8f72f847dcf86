package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/crypto/bcrypt"
)

// externalConfig is the nats-server configuration the operator guide gives
// for `--bus nats://...`: an account with JetStream, the server's user with
// every right in it, one user per agent with AgentPermissions. Generated
// from AgentPermissions so the guide and the code cannot drift apart.
func externalConfig(t *testing.T, storeDir, serverHash, agentHash string) string {
	t.Helper()
	pub, sub, err := AgentPermissions("h1")
	if err != nil {
		t.Fatal(err)
	}
	list := func(ss []string) string {
		q := make([]string, len(ss))
		for i, s := range ss {
			q[i] = fmt.Sprintf("%q", s)
		}
		return strings.Join(q, ", ")
	}
	return fmt.Sprintf(`
jetstream { store_dir: %q }
accounts {
  UPSCALE {
    jetstream: enabled
    users: [
      { user: "upscale", password: %q }
      { user: "agent-h1", password: %q,
        permissions: {
          publish:   { allow: [%s] }
          subscribe: { allow: [%s] }
        }
      }
    ]
  }
}
`, storeDir, serverHash, agentHash, list(pub), list(sub))
}

// An operator-run NATS with the documented configuration supports the
// whole package with user/password credentials, inside a named account.
func TestExternalNATSWithDocumentedConfig(t *testing.T) {
	dir := t.TempDir()
	hash := func(p string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(externalConfig(t, dir, hash("server-secret"), hash("agent-secret"))), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("documented config does not load: %v", err)
	}
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", server.RANDOM_PORT, true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server did not start")
	}

	ctx := testCtx(t)
	serverCreds, err := CredentialsFromURL("nats://upscale:server-secret@" + strings.TrimPrefix(srv.ClientURL(), "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	srvConn := connect(t, serverCreds, "server")
	agent := connect(t, Credentials{URL: srv.ClientURL(), Agent: "h1", User: "agent-h1", Password: "agent-secret"}, "agent-h1")

	stop, err := agent.Handle("upscale.agent.h1.ping", func(_ context.Context, _ json.RawMessage, progress func(string)) (any, error) {
		progress("pong coming")
		return "pong", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	var got string
	var lines []string
	if err := srvConn.Call(ctx, "upscale.agent.h1.ping", nil, &got, func(l string) { lines = append(lines, l) }); err != nil || got != "pong" || len(lines) != 1 {
		t.Fatalf("Call = %q %q, %v", got, lines, err)
	}

	data := randomBytes(6, 500<<10)
	put, err := srvConn.PutArtifact(ctx, "ns/app/v1", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if a, err := agent.GetArtifact(ctx, "ns/app/v1", &buf); err != nil || a != put || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("agent GetArtifact = %+v, %v", a, err)
	}
	if _, err := agent.PutArtifact(ctx, "ns/app/v1", strings.NewReader("x")); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("agent PutArtifact: %v", err)
	}
	if _, err := agent.Handle("upscale.agent.h2.ping", noop); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("agent Handle h2: %v", err)
	}
	if _, err := Connect(ctx, Credentials{URL: srv.ClientURL(), User: "agent-h1", Password: "wrong"}, "x", WithLogger(testLog())); err == nil {
		t.Fatal("wrong password connected")
	}
}
