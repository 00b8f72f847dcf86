package bus

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

func randomBytes(seed byte, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

func TestArtifact200MBRoundTrip(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	const size = 200 << 20
	const name = "ns/app/v1.tar.gz"

	h := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{1}), size), h)
	put, err := e.server.PutArtifact(ctx, name, src)
	if err != nil {
		t.Fatalf("PutArtifact: %v", err)
	}
	want := Artifact{Name: name, Size: size, SHA256: hex.EncodeToString(h.Sum(nil))}
	if put != want {
		t.Fatalf("PutArtifact = %+v, want %+v", put, want)
	}

	// The agent fetches it, as a host deploying the release would.
	gh, n := sha256.New(), &countingWriter{}
	got, err := e.agent.GetArtifact(ctx, name, io.MultiWriter(gh, n))
	if err != nil {
		t.Fatalf("GetArtifact: %v", err)
	}
	if got != want || n.n != size || hex.EncodeToString(gh.Sum(nil)) != want.SHA256 {
		t.Fatalf("GetArtifact = %+v (%d bytes, sha256 %x), want %+v", got, n.n, gh.Sum(nil), want)
	}
}

func TestArtifactReplaceAndDelete(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	for _, data := range [][]byte{[]byte("first"), randomBytes(2, 300<<10), {}} {
		if _, err := e.server.PutArtifact(ctx, "ns/app/v2", bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		a, err := e.server.GetArtifact(ctx, "ns/app/v2", &buf)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), data) || a.Size != int64(len(data)) {
			t.Fatalf("got %d bytes (%+v), want %d", buf.Len(), a, len(data))
		}
	}
	if err := e.server.DeleteArtifact(ctx, "ns/app/v2"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.server.GetArtifact(ctx, "ns/app/v2", io.Discard); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v, want ErrNotFound", err)
	}
	if err := e.server.DeleteArtifact(ctx, "ns/app/v2"); err != nil {
		t.Fatalf("second delete: %v, want success", err)
	}
	if err := e.server.DeleteArtifact(ctx, "ns/app/never"); err != nil {
		t.Fatalf("delete of a never stored artifact: %v, want success", err)
	}
}

func TestArtifactMissing(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	// Before anything was ever stored the bucket does not exist either;
	// a reader must not create it.
	if _, err := e.agent.GetArtifact(ctx, "ns/app/v9", io.Discard); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no bucket: %v, want ErrNotFound", err)
	}
	if _, err := e.server.PutArtifact(ctx, "ns/app/v1", bytes.NewReader([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	if _, err := e.agent.GetArtifact(ctx, "ns/app/v9", io.Discard); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no object: %v, want ErrNotFound", err)
	}
}

func TestArtifactCorruptChunkDetected(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	const name = "ns/app/v3"
	data := randomBytes(3, 300<<10) // three chunks
	if _, err := e.server.PutArtifact(ctx, name, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}

	// Flip one byte of the last chunk, keeping chunk count and order:
	// only the digest can tell.
	obs, err := e.server.objectStore(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	info, err := obs.GetInfo(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := e.server.js.Stream(ctx, bucketStream)
	if err != nil {
		t.Fatal(err)
	}
	chunkSubj := "$O." + Bucket + ".C." + info.NUID
	last, err := stream.GetLastMsgForSubject(ctx, chunkSubj)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(last.Data)
	bad[len(bad)/2] ^= 0xff
	if err := stream.DeleteMsg(ctx, last.Sequence); err != nil {
		t.Fatal(err)
	}
	if _, err := e.server.js.Publish(ctx, chunkSubj, bad); err != nil {
		t.Fatal(err)
	}

	_, err = e.agent.GetArtifact(ctx, name, io.Discard)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("GetArtifact of corrupted artifact: %v, want ErrCorrupt", err)
	}
}

func TestArtifactMissingChunkDetected(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	const name = "ns/app/v4"
	if _, err := e.server.PutArtifact(ctx, name, bytes.NewReader(randomBytes(4, 300<<10))); err != nil {
		t.Fatal(err)
	}
	obs, err := e.server.objectStore(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	info, err := obs.GetInfo(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := e.server.js.Stream(ctx, bucketStream)
	if err != nil {
		t.Fatal(err)
	}
	last, err := stream.GetLastMsgForSubject(ctx, "$O."+Bucket+".C."+info.NUID)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteMsg(ctx, last.Sequence); err != nil {
		t.Fatal(err)
	}
	if _, err := e.agent.GetArtifact(ctx, name, io.Discard); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("GetArtifact with a chunk missing: %v, want ErrCorrupt", err)
	}
}

func TestArtifactBadNames(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	for _, name := range []string{"", "/abs", "a/../b", "sp ace", "new\nline", string(make([]byte, 300))} {
		if _, err := e.server.PutArtifact(ctx, name, bytes.NewReader(nil)); err == nil {
			t.Errorf("PutArtifact(%q) accepted", name)
		}
	}
}

// Stored artifacts survive a restart of the embedded server on the same
// directory: they are the releases every host redeploys from.
func TestEmbeddedRestartKeepsArtifactsAndCredentials(t *testing.T) {
	dir := t.TempDir()
	ctx := testCtx(t)
	e1, err := StartEmbedded(EmbeddedConfig{Dir: dir, Listen: "127.0.0.1:0", Log: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	creds1, err := e1.AgentCredentials("h1")
	if err != nil {
		e1.Shutdown()
		t.Fatal(err)
	}
	server1 := e1.ServerCredentials()
	c, err := Connect(ctx, server1, "server", WithLogger(testLog()))
	if err != nil {
		e1.Shutdown()
		t.Fatal(err)
	}
	data := randomBytes(4, 1<<20)
	put, err := c.PutArtifact(ctx, "ns/app/v7", bytes.NewReader(data))
	c.Close()
	e1.Shutdown()
	if err != nil {
		t.Fatal(err)
	}

	// Same address, so the agent's credentials file stays valid verbatim.
	addr := hostPort(t, e1.URL())
	e2 := startBus(t, dir, addr)
	if creds2, err := e2.AgentCredentials("h1"); err != nil || creds2 != creds1 {
		t.Fatalf("agent credentials after restart = %v, %v; want the same as before", creds2, err)
	}
	if e2.ServerCredentials() != server1 {
		t.Fatal("server credentials changed across restart")
	}
	agent := connect(t, creds1, "agent-h1")
	var buf bytes.Buffer
	got, err := agent.GetArtifact(ctx, "ns/app/v7", &buf)
	if err != nil {
		t.Fatalf("GetArtifact after restart: %v", err)
	}
	if got != put || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("after restart got %+v, want %+v", got, put)
	}
}
