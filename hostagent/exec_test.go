package hostagent

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// A one-off or build container left by an agent that died goes when the
// next one starts, with the build's files; app instances and anything with
// meta stay.
func TestSweepLeftovers(t *testing.T) {
	rt := newFakeRuntime()
	state := t.TempDir()
	a := New(Config{Host: "h1", StateDir: state, Log: slog.New(slog.DiscardHandler)}, rt, nil, nil)
	ctx := context.Background()
	for _, name := range []string{"exec-acme-web-abc123", "exec-acme-api-def456", "acme-web-v1-aaaaaa", "build-x-1", "exec-owned", "build-web-v1-bbbbbb"} {
		rt.Create(ctx, ContainerSpec{Name: name})
		rt.Start(ctx, name)
	}
	a.saveMeta("acme-web-v1-aaaaaa", meta{App: "acme/web", Release: 1})
	a.saveMeta("exec-owned", meta{App: "acme/web", Release: 1})
	// An instance of an app in a namespace named build.
	a.saveMeta("build-web-v1-bbbbbb", meta{App: "build/web", Release: 1})
	files := map[string]bool{ // path: whether it stays
		"build-123/app/app.py":               false,
		"artifact-456":                       false,
		"outbox/build-789.tar.gz":            false,
		"releases/" + digest + ".tmp/x":      false,
		"releases/" + digest + "/app.py":     true,
		"containers/acme-web-v1-aaaaaa.json": true,
	}
	for p := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(state, p)), 0o700)
		os.WriteFile(filepath.Join(state, p), nil, 0o600)
	}
	a.sweepLeftovers()
	var left []string
	for name := range rt.cs {
		left = append(left, name)
	}
	slices.Sort(left)
	if want := []string{"acme-web-v1-aaaaaa", "build-web-v1-bbbbbb", "exec-owned"}; !slices.Equal(left, want) {
		t.Errorf("containers after the sweep: %v, want %v", left, want)
	}
	for p, stays := range files {
		if _, err := os.Stat(filepath.Join(state, p)); (err == nil) != stays {
			t.Errorf("%s: stays %v, want %v", p, err == nil, stays)
		}
	}
	for _, d := range []string{"build-123", "releases/" + digest + ".tmp"} {
		if _, err := os.Stat(filepath.Join(state, d)); err == nil {
			t.Errorf("%s is still there", d)
		}
	}
}

const digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// A status call's router address reaches OnRouter, which lets it through
// to the containers; a call without one does not.
func TestStatusPassesTheRouterOn(t *testing.T) {
	var got []string
	a := New(Config{Host: "h1", StateDir: t.TempDir(), Log: slog.New(slog.DiscardHandler), OnRouter: func(addr string) { got = append(got, addr) }},
		newFakeRuntime(), &fakeImages{}, nil)
	for _, raw := range []string{`{"router":"10.0.0.9"}`, `{}`} {
		if _, err := a.status(context.Background(), json.RawMessage(raw), func(string) {}); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 1 || got[0] != "10.0.0.9" {
		t.Errorf("OnRouter got %q, want just 10.0.0.9", got)
	}
}
