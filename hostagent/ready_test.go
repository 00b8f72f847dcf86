package hostagent

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/runtimes"
)

// readyRuntime is a fakeRuntime that records Ready calls.
type readyRuntime struct {
	*fakeRuntime
	mu      sync.Mutex
	readied []string
}

func (r *readyRuntime) Ready(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.readied = append(r.readied, name)
	return nil
}

// A started container gets its full CPU share (Ready) once it passed its
// health check, and not before; one that fails it never does.
func TestStartReadiesOnceHealthy(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to chown")
	}
	ranges, _ := testRanges(t, machine)
	rt := &readyRuntime{fakeRuntime: newFakeRuntime()}
	a := New(Config{Host: "h1", StateDir: t.TempDir(), IDBase: 165536, Ranges: ranges, Log: slog.New(slog.DiscardHandler)},
		rt, &fakeImages{dir: t.TempDir()}, newFakeBus(t))
	req := func(name string) json.RawMessage {
		raw, _ := json.Marshal(agentapi.StartRequest{Worker: true, HealthTimeout: 10 * time.Second, ReleaseContainer: agentapi.ReleaseContainer{
			Name: name, App: "acme/web", Release: 1, Runtime: runtimes.Runtime{Name: "python"},
			Artifact: "a", Digest: strings.Repeat("a", 64), Command: "true"}})
		return raw
	}
	if _, err := a.start(context.Background(), req("acme-web-v1-1"), func(string) {}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rt.readied, []string{"acme-web-v1-1"}) {
		t.Fatalf("Ready called for %q, want the started container once", rt.readied)
	}

	// A worker that exits at once fails its start: never readied.
	go func() {
		for {
			rt.fakeRuntime.mu.Lock()
			c := rt.cs["acme-web-v1-2"]
			if c != nil && c.State == "running" {
				c.State, c.ExitCode = "stopped", 1
				rt.fakeRuntime.mu.Unlock()
				return
			}
			rt.fakeRuntime.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	if _, err := a.start(context.Background(), req("acme-web-v1-2"), func(string) {}); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("a worker that exited: %v", err)
	}
	if len(rt.readied) != 1 {
		t.Fatalf("Ready called for %q after a failed start", rt.readied)
	}
}
