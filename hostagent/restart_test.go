package hostagent

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeRuntime keeps containers in memory; Start marks them running.
type fakeRuntime struct {
	mu     sync.Mutex
	cs     map[string]*Container
	starts map[string]int
	specs  map[string]ContainerSpec // what each was created from
	appDir string                   // AppDir of every container
	layers map[string]string        // Layer of each container
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{cs: map[string]*Container{}, starts: map[string]int{}, specs: map[string]ContainerSpec{}}
}

func (f *fakeRuntime) Create(_ context.Context, s ContainerSpec) (Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := &Container{Name: s.Name, IP: netip.MustParseAddr("10.0.0.2"), State: "stopped"}
	f.cs[s.Name] = c
	f.specs[s.Name] = s
	return *c, nil
}
func (f *fakeRuntime) Start(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cs[name].State, f.cs[name].StartedAt = "running", time.Now()
	f.starts[name]++
	return nil
}
func (f *fakeRuntime) crash(name string, code int, startedAt time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cs[name].State, f.cs[name].ExitCode, f.cs[name].StartedAt = "stopped", code, startedAt
}
func (f *fakeRuntime) Stop(_ context.Context, name string, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cs[name].State = "stopped"
	return nil
}
func (f *fakeRuntime) Destroy(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.cs, name)
	return nil
}
func (f *fakeRuntime) Get(name string) (Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *f.cs[name], nil
}
func (f *fakeRuntime) List() ([]Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Container
	for _, c := range f.cs {
		out = append(out, *c)
	}
	return out, nil
}
func (f *fakeRuntime) Logs(string, int) ([]string, error) { return nil, nil }
func (f *fakeRuntime) Follow(context.Context, string, int64, func(string)) error {
	return nil
}
func (f *fakeRuntime) LogLines(string, int) ([]LogLine, error) { return nil, nil }
func (f *fakeRuntime) FollowLines(context.Context, string, int64, func(LogLine)) error {
	return nil
}
func (f *fakeRuntime) Wait(context.Context, string) (int, error) { return 0, nil }
func (f *fakeRuntime) AppDir(string) string                      { return f.appDir }
func (f *fakeRuntime) Layer(name string) string                  { return f.layers[name] }

func TestCrashRestartsBackOff(t *testing.T) {
	rt := newFakeRuntime()
	a := New(Config{Host: "h1", StateDir: t.TempDir(), Log: slog.New(slog.DiscardHandler)}, rt, nil, nil)
	ctx := context.Background()
	for _, name := range []string{"web-1", "held-1", "build-1"} {
		rt.Create(ctx, ContainerSpec{Name: name})
		rt.Start(ctx, name)
	}
	a.saveMeta("web-1", meta{App: "acme/web", Release: 1})
	a.saveMeta("held-1", meta{App: "acme/web", Release: 1, Held: true})

	now := time.Now()
	crashAndTick := func(at time.Time) {
		rt.crash("web-1", 3, at.Add(-time.Second))
		rt.crash("held-1", 0, at.Add(-time.Second))
		rt.crash("build-1", 0, at.Add(-time.Second))
		a.superviseOnce(ctx, at)
	}
	// First crash: restarted at once.
	crashAndTick(now)
	if rt.starts["web-1"] != 2 {
		t.Fatalf("first crash: %d starts, want a restart at once", rt.starts["web-1"])
	}
	// Second crash: waits 1 s, then restarts.
	crashAndTick(now)
	if rt.starts["web-1"] != 2 {
		t.Fatal("second crash restarted without waiting")
	}
	a.superviseOnce(ctx, now.Add(1100*time.Millisecond))
	if rt.starts["web-1"] != 3 {
		t.Fatalf("second crash: %d starts after 1.1 s", rt.starts["web-1"])
	}
	m := a.loadMeta("web-1")
	if m.Restarts != 2 || m.LastExit != 3 {
		t.Fatalf("meta %+v", m)
	}
	if rt.starts["held-1"] != 1 || rt.starts["build-1"] != 1 {
		t.Fatalf("restarted what it must not: held %d, build %d", rt.starts["held-1"], rt.starts["build-1"])
	}
	// After 10 minutes running, a crash restarts at once again.
	rt.crash("web-1", 1, now.Add(-11*time.Minute))
	a.superviseOnce(ctx, now)
	if rt.starts["web-1"] != 4 || a.loadMeta("web-1").Restarts != 1 {
		t.Fatalf("a crash after a long run was not restarted at once: %d starts, %+v", rt.starts["web-1"], a.loadMeta("web-1"))
	}
}

func TestBackoff(t *testing.T) {
	for n, want := range []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second} {
		if got := backoff(n); got != want {
			t.Errorf("backoff(%d) = %v, want %v", n, got, want)
		}
	}
	if backoff(30) != maxBackoff || backoff(9) != 256*time.Second || backoff(10) != maxBackoff {
		t.Fatalf("backoff caps wrong: %v %v %v", backoff(30), backoff(9), backoff(10))
	}
}
