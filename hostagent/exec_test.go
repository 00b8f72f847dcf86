package hostagent

import (
	"context"
	"log/slog"
	"slices"
	"testing"
)

// A one-off container left by an agent that died goes when the next one
// starts; app instances, builds and anything with meta stay.
func TestSweepOneOffs(t *testing.T) {
	rt := newFakeRuntime()
	a := New(Config{Host: "h1", StateDir: t.TempDir(), Log: slog.New(slog.DiscardHandler)}, rt, nil, nil)
	ctx := context.Background()
	for _, name := range []string{"exec-acme-web-abc123", "exec-acme-api-def456", "acme-web-v1-aaaaaa", "build-x-1", "exec-owned"} {
		rt.Create(ctx, ContainerSpec{Name: name})
		rt.Start(ctx, name)
	}
	a.saveMeta("acme-web-v1-aaaaaa", meta{App: "acme/web", Release: 1})
	a.saveMeta("exec-owned", meta{App: "acme/web", Release: 1})
	a.sweepOneOffs()
	var left []string
	for name := range rt.cs {
		left = append(left, name)
	}
	slices.Sort(left)
	if want := []string{"acme-web-v1-aaaaaa", "build-x-1", "exec-owned"}; !slices.Equal(left, want) {
		t.Errorf("containers after the sweep: %v, want %v", left, want)
	}
}
