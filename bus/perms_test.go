package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

func noop(context.Context, json.RawMessage, func(string)) (any, error) { return "ok", nil }

func TestAgentServesOnlyItsOwnSubjects(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)

	stop, err := e.agent.Handle("upscale.agent.h1.start", noop)
	if err != nil {
		t.Fatalf("agent h1 Handle on its own subject: %v", err)
	}
	t.Cleanup(stop)
	var got string
	if err := e.server.Call(ctx, "upscale.agent.h1.start", nil, &got, nil); err != nil || got != "ok" {
		t.Fatalf("server → h1: %q, %v", got, err)
	}

	if _, err := e.agent.Handle("upscale.agent.h2.start", noop); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("h1 Handle on h2: %v, want ErrPermissionDenied", err)
	}
	for _, subj := range []string{"upscale.agent.h2.>", "upscale.>", "_INBOX.>", "$O.>", "$JS.API.>"} {
		if _, _, err := e.agent.subscribeChecked(subj, ""); !errors.Is(err, ErrPermissionDenied) {
			t.Errorf("h1 subscribe %s: %v, want ErrPermissionDenied", subj, err)
		}
	}
}

func TestAgentCannotPublishToAnotherAgent(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)

	// h2's traffic as the server sees it.
	spy, err := e.server.nc.SubscribeSync("upscale.agent.h2.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.server.nc.Flush(); err != nil {
		t.Fatal(err)
	}

	wctx, done := e.agent.watchDenials(ctx, func(s string) bool { return s == "upscale.agent.h2.stop" })
	defer done()
	if err := e.agent.nc.Publish("upscale.agent.h2.stop", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := e.agent.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	<-wctx.Done()
	if err := denied(wctx); err == nil || !strings.Contains(err.Error(), `publish to "upscale.agent.h2.stop"`) {
		t.Fatalf("publish to h2: cause %v, want a publish permission error", context.Cause(wctx))
	}
	// The server processed h1's PUB before its PING; a delivery to the spy
	// would be queued before the spy connection's PONG.
	if err := e.server.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := spy.Pending(); n != 0 {
		t.Fatalf("h2 received %d messages published by h1", n)
	}

	// Through the API: the request is refused, not left to time out.
	if err := e.agent.Call(ctx, "upscale.agent.h2.stop", nil, nil, nil); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("h1 Call to h2: %v, want ErrPermissionDenied", err)
	}
	if n, _, _ := spy.Pending(); n != 0 {
		t.Fatalf("h2 received %d messages from h1's Call", n)
	}
}

func TestAgentReadsButCannotWriteArtifacts(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	data := randomBytes(5, 200<<10)
	put, err := e.server.PutArtifact(ctx, "ns/app/v1", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	if got, err := e.agent.GetArtifact(ctx, "ns/app/v1", &buf); err != nil || got != put || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("agent GetArtifact = %+v, %v", got, err)
	}

	if _, err := e.agent.PutArtifact(ctx, "ns/app/v1", strings.NewReader("evil")); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("agent PutArtifact over existing: %v, want ErrPermissionDenied", err)
	}
	if _, err := e.agent.PutArtifact(ctx, "ns/app/new", strings.NewReader("evil")); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("agent PutArtifact new: %v, want ErrPermissionDenied", err)
	}
	if err := e.agent.DeleteArtifact(ctx, "ns/app/v1"); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("agent DeleteArtifact: %v, want ErrPermissionDenied", err)
	}

	// The refusals above arrive asynchronously; a late one must not be
	// taken for a refusal of this read.
	buf.Reset()
	if got, err := e.agent.GetArtifact(ctx, "ns/app/v1", &buf); err != nil || got != put {
		t.Fatalf("agent GetArtifact after refused writes = %+v, %v", got, err)
	}

	// And the artifact is untouched.
	buf.Reset()
	if got, err := e.server.GetArtifact(ctx, "ns/app/v1", &buf); err != nil || got != put || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("after agent attempts: %+v, %v", got, err)
	}
	if _, err := e.server.GetArtifact(ctx, "ns/app/new", io.Discard); !errors.Is(err, ErrNotFound) {
		t.Fatalf("agent-put artifact exists: %v", err)
	}
}

// publishDenied publishes to subject on c and waits for the server's
// refusal; it fails the test if the refusal is for something else.
func publishDenied(t *testing.T, c *Conn, subject string, data []byte) {
	t.Helper()
	wctx, done := c.watchDenials(testCtx(t), func(s string) bool { return s == subject })
	defer done()
	if err := c.nc.PublishRequest(subject, c.nc.NewInbox(), data); err != nil {
		t.Fatal(err)
	}
	<-wctx.Done()
	if err := denied(wctx); err == nil {
		t.Fatalf("publish to %s: %v, want a permission error", subject, context.Cause(wctx))
	}
}

// Agents read artifacts with direct gets only. A consumer's deliver subject
// is not checked against its creator's permissions, so an agent able to
// create one could have JetStream publish onto another agent's subjects.
func TestAgentCannotCreateConsumersOrTouchStreams(t *testing.T) {
	e := newEnv(t)
	if _, err := e.server.PutArtifact(testCtx(t), "ns/app/v1", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	consumer := []byte(`{"stream_name":"` + bucketStream + `","config":{"deliver_subject":"upscale.agent.h2.start","filter_subject":"$O.` + Bucket + `.C.x"}}`)
	for _, subj := range []string{
		"$JS.API.CONSUMER.CREATE." + bucketStream,
		"$JS.API.CONSUMER.CREATE." + bucketStream + ".c1.$O." + Bucket + ".C.x",
		"$JS.API.CONSUMER.DURABLE.CREATE." + bucketStream + ".c1",
		"$JS.API.STREAM.PURGE." + bucketStream,
		"$JS.API.STREAM.DELETE." + bucketStream,
		"$JS.API.STREAM.UPDATE." + bucketStream,
		"$JS.API.STREAM.CREATE.evil",
		"$JS.API.STREAM.MSG.DELETE." + bucketStream,
		"$O." + Bucket + ".M.bnMvYXBwL3Yx",
	} {
		publishDenied(t, e.agent, subj, consumer)
	}
}

func TestStrangersCannotConnect(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	agent, err := e.bus.AgentCredentials("h1")
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]Credentials{
		// The CA is no secret (every host has it): strangers get it too.
		"unknown nkey":        {URL: e.bus.URL(), NKey: string(seed), CA: e.bus.CA()},
		"right name, new key": {URL: e.bus.URL(), Agent: "h1", NKey: string(seed), CA: e.bus.CA()},
		"no credentials":      {URL: e.bus.URL(), CA: e.bus.CA()},
		"user and password":   {URL: e.bus.URL(), User: "h1", Password: agent.NKey, CA: e.bus.CA()},
	} {
		conn, err := Connect(ctx, c, "stranger", WithLogger(testLog()))
		if err == nil {
			conn.Close()
			t.Errorf("%s: connected", name)
			continue
		}
		if !errors.Is(err, nats.ErrAuthorization) || !errors.Is(err, ErrRevoked) {
			t.Errorf("%s: %v, want an authorization error", name, err)
		}
	}
}

func TestRemoveAgentRevokes(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	creds, err := e.bus.AgentCredentials("h1")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.bus.RemoveAgent("h1"); err != nil {
		t.Fatal(err)
	}
	// The live connection is cut and cannot come back.
	<-e.agent.Done()
	if !errors.Is(e.agent.Err(), ErrRevoked) {
		t.Fatalf("agent connection ended with %v, want ErrRevoked", e.agent.Err())
	}
	if _, err := Connect(ctx, creds, "agent-h1", WithLogger(testLog())); !errors.Is(err, nats.ErrAuthorization) || !errors.Is(err, ErrRevoked) {
		t.Fatalf("Connect after RemoveAgent: %v, want authorization error", err)
	}
	// Re-adding issues a new key; the old file stays dead.
	again, err := e.bus.AgentCredentials("h1")
	if err != nil || again.NKey == creds.NKey {
		t.Fatalf("re-added agent: same key or %v", err)
	}
	connect(t, again, "agent-h1")
	if err := e.bus.RemoveAgent("never-added"); err != nil {
		t.Fatalf("removing an unknown agent: %v", err)
	}
}

func TestAgentNamesValidated(t *testing.T) {
	e := newEnv(t)
	for _, h := range []string{"", "H1", "1h", "h1.x", "h1>", "h_1", strings.Repeat("h", 41), "../h1"} {
		if _, err := e.bus.AgentCredentials(h); err == nil {
			t.Errorf("AgentCredentials(%q) accepted", h)
		}
		if _, _, err := AgentPermissions(h); err == nil {
			t.Errorf("AgentPermissions(%q) accepted", h)
		}
	}
}

func TestAgentPermissionsAreDisjoint(t *testing.T) {
	pub1, sub1, err := AgentPermissions("h1")
	if err != nil {
		t.Fatal(err)
	}
	pub2, sub2, _ := AgentPermissions("h10")
	for _, s := range append(pub1, sub1...) {
		if strings.Contains(s, "h10") {
			t.Errorf("h1 grant %q mentions h10", s)
		}
	}
	// Shared grants are only the read-only artifact ones.
	shared := map[string]bool{}
	for _, s := range append(pub1, sub1...) {
		shared[s] = true
	}
	for _, s := range append(pub2, sub2...) {
		if shared[s] && strings.Contains(s, "upscale.agent") {
			t.Errorf("h1 and h10 share %q", s)
		}
	}
}

// NATS lets any request name any reply subject, and JetStream answers there:
// h1 can make JetStream publish onto h2's request subject. Handle must not
// take that for a request.
func TestInjectedMessagesAreNotRequests(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	if _, err := e.server.PutArtifact(ctx, "ns/app/v1", strings.NewReader(`{"keepalive_ms":1000,"body":{}}`)); err != nil {
		t.Fatal(err)
	}
	h2creds, err := e.bus.AgentCredentials("h2")
	if err != nil {
		t.Fatal(err)
	}
	h2 := connect(t, h2creds, "agent-h2")
	var runs int
	stop, err := h2.Handle("upscale.agent.h2.stop", func(context.Context, json.RawMessage, func(string)) (any, error) {
		runs++
		return "stopped", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	spy, err := e.server.nc.SubscribeSync("upscale.agent.h2.stop")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.server.nc.Flush(); err != nil {
		t.Fatal(err)
	}

	// h1 asks JetStream for the artifact's chunk, with h2's subject as
	// the reply: the chunk is a well-formed request envelope.
	req := []byte(`{"next_by_subj":"$O.` + Bucket + `.C.>"}`)
	if err := e.agent.nc.PublishRequest("$JS.API.DIRECT.GET."+bucketStream, "upscale.agent.h2.stop", req); err != nil {
		t.Fatal(err)
	}
	injected, err := spy.NextMsgWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(injected.Data), "keepalive_ms") || injected.Reply != "" {
		t.Fatalf("injection did not go as planned: %q reply %q", injected.Data, injected.Reply)
	}
	// JetStream published it to h2 and the spy at once, so h2's handler
	// has it queued before this call's request.
	var got string
	if err := e.server.Call(ctx, "upscale.agent.h2.stop", nil, &got, nil); err != nil || got != "stopped" {
		t.Fatalf("Call = %q, %v", got, err)
	}
	stop()
	if runs != 1 {
		t.Fatalf("h2's handler ran %d times, want 1 (the server's call only)", runs)
	}
}
