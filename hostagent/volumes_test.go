package hostagent

import (
	"context"
	"encoding/json"
	"errors"
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

// fakeMounter records mounts; what is mounted is a set of dirs.
type fakeMounter struct {
	mu      sync.Mutex
	mounted map[string]int // dir -> uid
	calls   []string
	fail    error
}

func (m *fakeMounter) Mount(_ context.Context, servers []string, volume, dir string, uid, gid int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, "mount "+volume)
	if m.fail != nil {
		return m.fail
	}
	m.mounted[dir] = uid
	return nil
}

func (m *fakeMounter) Unmount(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, "unmount "+dir)
	delete(m.mounted, dir)
	return nil
}

func volumeAgent(t *testing.T) (*Agent, *fakeRuntime, *fakeMounter) {
	if os.Getuid() != 0 {
		t.Skip("needs root to chown")
	}
	ranges, _ := testRanges(t, machine)
	rt := newFakeRuntime()
	m := &fakeMounter{mounted: map[string]int{}}
	a := New(Config{Host: "h1", StateDir: t.TempDir(), IDBase: 165536, Ranges: ranges, Mounter: m, Log: slog.New(slog.DiscardHandler)},
		rt, &fakeImages{dir: t.TempDir()}, newFakeBus(t))
	return a, rt, m
}

func startWith(a *Agent, name, app string, vols ...agentapi.VolumeMount) error {
	raw, _ := json.Marshal(agentapi.StartRequest{Worker: true, HealthTimeout: 10 * time.Second, ReleaseContainer: agentapi.ReleaseContainer{
		Name: name, App: app, Release: 1, Runtime: runtimes.Runtime{Name: "python"},
		Artifact: "a", Digest: strings.Repeat("a", 64), Command: "true", Volumes: vols}})
	_, err := a.start(context.Background(), raw, func(string) {})
	return err
}

func call(a *Agent, h func(context.Context, json.RawMessage, func(string)) (any, error), req any) error {
	raw, _ := json.Marshal(req)
	_, err := h(context.Background(), raw, func(string) {})
	return err
}

// A container's volume is mounted for its namespace's range and bound at
// its path before it is created; it stays mounted while any container of
// the host uses it and is unmounted when the last one goes.
func TestVolumesMountedForTheirUsers(t *testing.T) {
	a, rt, m := volumeAgent(t)
	ctx := context.Background()
	base, err := a.cfg.Ranges.For(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	data := agentapi.VolumeMount{Volume: "upscale_acme_data", Servers: []string{"10.0.0.1", "10.0.0.2"}, Path: "/app/data"}
	if err := startWith(a, "acme-web-1", "acme/web", data); err != nil {
		t.Fatal(err)
	}
	dir := a.volumeDir("upscale_acme_data")
	if uid, ok := m.mounted[dir]; !ok || uid != int(base) {
		t.Fatalf("mounted %v, want %s for uid %d", m.mounted, dir, base)
	}
	if got := rt.specs["acme-web-1"].Binds; !slices.Equal(got, []Bind{{Source: dir, Target: "/app/data"}}) {
		t.Errorf("binds %+v", got)
	}
	ro := data
	ro.ReadOnly = true
	if err := startWith(a, "acme-api-1", "acme/api", ro); err != nil {
		t.Fatal(err)
	}
	if got := rt.specs["acme-api-1"].Binds; len(got) != 1 || !got[0].ReadOnly {
		t.Errorf("a read-only attachment's binds %+v", got)
	}
	err = call(a, a.unmount, agentapi.UnmountRequest{Volume: "upscale_acme_data"})
	if err == nil || err.Error() != "volume upscale_acme_data is in use by acme-api-1, acme-web-1" {
		t.Errorf("unmount in use: %v", err)
	}
	if err := call(a, a.destroy, agentapi.DestroyRequest{Name: "acme-web-1"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.mounted[dir]; !ok {
		t.Fatal("unmounted while acme-api-1 still uses it")
	}
	if err := call(a, a.destroy, agentapi.DestroyRequest{Name: "acme-api-1"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.mounted[dir]; ok {
		t.Fatal("still mounted after its last container went")
	}
	// Mounted ahead of a start by the server, unmounted on request.
	if err := call(a, a.mount, agentapi.MountRequest{Namespace: "acme", Volume: data}); err != nil || m.mounted[dir] != int(base) {
		t.Fatalf("mount: %v, %v", err, m.mounted)
	}
	if err := call(a, a.unmount, agentapi.UnmountRequest{Volume: "upscale_acme_data"}); err != nil || len(m.mounted) != 0 {
		t.Fatalf("unmount: %v, %v", err, m.mounted)
	}
}

// Whatever the server asks, a container gets only its own namespace's
// volumes, never at a system path, and a failed mount creates nothing.
func TestVolumeRefusalsRegression(t *testing.T) {
	a, rt, m := volumeAgent(t)
	for _, tc := range []struct {
		vol  agentapi.VolumeMount
		want string
	}{
		{agentapi.VolumeMount{Volume: "upscale_beta_data", Servers: []string{"h"}, Path: "/data"}, "volume upscale_beta_data is not namespace acme's"},
		{agentapi.VolumeMount{Volume: "upscale_acme_data", Servers: []string{"h"}, Path: "/"}, "volume upscale_acme_data: volume path /: a volume cannot replace the container's root"},
		{agentapi.VolumeMount{Volume: "upscale_acme_data", Servers: []string{"h"}, Path: "/proc"}, "/proc is the system's"},
		{agentapi.VolumeMount{Volume: "upscale_acme_data", Servers: []string{"h"}, Path: "/etc/x"}, "/etc is the system's"},
		{agentapi.VolumeMount{Volume: "upscale_acme_data", Servers: []string{"h"}, Path: "/data/../etc"}, "no . or .. allowed"},
		{agentapi.VolumeMount{Volume: "../../etc", Servers: []string{"h"}, Path: "/data"}, `invalid volume "../../etc"`},
		{agentapi.VolumeMount{Volume: "upscale_acme_data", Path: "/data"}, "volume upscale_acme_data: no storage host"},
	} {
		err := startWith(a, "acme-web-1", "acme/web", tc.vol)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: %v, want %q", tc.vol, err, tc.want)
		}
	}
	if err := call(a, a.mount, agentapi.MountRequest{Namespace: "acme", Volume: agentapi.VolumeMount{Volume: "upscale_beta_data", Servers: []string{"h"}}}); err == nil || err.Error() != "volume upscale_beta_data is not namespace acme's" {
		t.Errorf("mount of another namespace's volume: %v", err)
	}
	m.fail = errors.New("mount volume upscale_acme_data from h: the volume does not answer")
	err := startWith(a, "acme-web-1", "acme/web", agentapi.VolumeMount{Volume: "upscale_acme_data", Servers: []string{"h"}, Path: "/data"})
	if err == nil || err.Error() != "volume upscale_acme_data: mount volume upscale_acme_data from h: the volume does not answer" {
		t.Errorf("a failed mount: %v", err)
	}
	if len(rt.specs) != 0 || len(m.mounted) != 0 {
		t.Errorf("refused starts left containers %v, mounts %v", rt.specs, m.mounted)
	}
	a.cfg.Mounter = nil
	err = startWith(a, "acme-web-1", "acme/web", agentapi.VolumeMount{Volume: "upscale_acme_data", Servers: []string{"h"}, Path: "/data"})
	if err == nil || !strings.Contains(err.Error(), "this agent mounts no volumes") {
		t.Errorf("an agent without a mounter: %v", err)
	}
}
