package fleet

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/agentapi/agenttest"
	"github.com/upscalehq/upscale/store"
)

func TestHostsGoDownWhenSilent(t *testing.T) {
	f := New(slog.New(slog.DiscardHandler))
	clock := time.Unix(1000, 0)
	f.now = func() time.Time { return clock }
	f.SetRecords([]store.Host{{Name: "h2", Address: "10.0.0.2", Weight: 2}, {Name: "h1", State: store.HostDraining}, {Name: "h3"}})
	var changes []string
	f.OnChange = func(h Host) { changes = append(changes, h.Name+"="+h.State) }
	f.Beat("h2", agentapi.Beat{Info: agentapi.Info{Name: "spoofed", CPUs: 2}})
	f.Beat("h1", agentapi.Beat{})
	f.report()
	hosts := f.Hosts()
	if len(hosts) != 3 || hosts[0].Name != "h1" || hosts[1].Name != "h2" || hosts[1].CPUs != 2 || hosts[1].Address != "10.0.0.2" {
		t.Fatalf("hosts %+v: want h1, h2, h3 named by record and subject, not message", hosts)
	}
	if !hosts[1].Up || hosts[1].State != "up" || !hosts[1].Active() || hosts[1].Record.Weight != 2 {
		t.Fatalf("h2 %+v", hosts[1])
	}
	if !hosts[0].Up || hosts[0].State != "draining" || hosts[0].Active() {
		t.Fatalf("draining h1 %+v", hosts[0])
	}
	if hosts[2].Up || hosts[2].State != "down" {
		t.Fatalf("silent h3 %+v", hosts[2])
	}
	clock = clock.Add(DownAfter - time.Millisecond)
	if len(f.Up()) != 2 {
		t.Fatal("a host went down before DownAfter")
	}
	f.Beat("h1", agentapi.Beat{})
	clock = clock.Add(2 * time.Millisecond)
	f.report()
	up := f.Up()
	if len(up) != 1 || up[0].Name != "h1" {
		t.Fatalf("up = %+v, want only h1", up)
	}
	if len(changes) != 3 || changes[2] != "h2=down" {
		t.Fatalf("changes %v", changes)
	}
}

// hangingAgents answers status calls for "fast" at once and never for
// "stuck" (until the call's context ends), noting how many questions to
// stuck are out and how often fast was asked while one was.
type hangingAgents struct {
	mu                 sync.Mutex
	stuckOut, maxStuck int
	fastWhileStuck     int
}

func (b *hangingAgents) Status(ctx context.Context, host string, _ agentapi.StatusRequest) (agentapi.Beat, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if host != "stuck" {
		if b.stuckOut > 0 {
			b.fastWhileStuck++
		}
		return agentapi.Beat{}, nil
	}
	b.stuckOut++
	b.maxStuck = max(b.maxStuck, b.stuckOut)
	b.mu.Unlock()
	<-ctx.Done()
	b.mu.Lock()
	b.stuckOut--
	return agentapi.Beat{}, ctx.Err()
}

// A host that never answers delays nobody: the answering host is asked
// again while the silent one's question is still out, and the silent one
// is never asked twice at once.
func TestWatchIsNotHeldUpBySilentHosts(t *testing.T) {
	f := New(slog.New(slog.DiscardHandler))
	bus := &hangingAgents{}
	records := func(context.Context) ([]store.Host, error) {
		return []store.Host{{Name: "fast"}, {Name: "stuck"}}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		f.Watch(ctx, bus, records, 50*time.Millisecond)
	}()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		bus.mu.Lock()
		n := bus.fastWhileStuck
		bus.mu.Unlock()
		if n >= 3 {
			break
		}
	}
	cancel()
	<-watched
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if bus.fastWhileStuck < 3 {
		t.Errorf("the answering host was asked %d time(s) while the silent one's question was out, want it asked on as usual", bus.fastWhileStuck)
	}
	if bus.maxStuck != 1 {
		t.Errorf("%d questions to the silent host were out at once, want 1", bus.maxStuck)
	}
	up := f.Up()
	if len(up) != 1 || up[0].Name != "fast" {
		t.Errorf("up = %+v, want fast only", up)
	}
}

// Each status call tells the agent where the router's connections come
// from, as RouterFrom says for its host.
func TestStatusCallsCarryTheRouter(t *testing.T) {
	f := New(slog.New(slog.DiscardHandler))
	f.RouterFrom = func(h store.Host) string {
		if h.Name == "remote" {
			return "10.0.0.9"
		}
		return ""
	}
	agents := agenttest.New()
	records := func(context.Context) ([]store.Host, error) {
		return []store.Host{{Name: "remote"}, {Name: "local"}}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // one round: Watch asks once before it looks at ctx
	f.Watch(ctx, agents, records, time.Second)
	got := map[string]agentapi.StatusRequest{}
	for _, c := range agents.Calls() {
		got[c.Host] = c.Req.(agentapi.StatusRequest)
	}
	if got["remote"].Router != "10.0.0.9" || got["local"].Router != "" {
		t.Errorf("status requests %+v", got)
	}
}

// A host the server has only begun asking (its own agent, started with
// it) is not logged down at every start: it has DownAfter to answer.
func TestNewHostIsNotDownBeforeItHadTimeToAnswer(t *testing.T) {
	var log bytes.Buffer
	f := New(slog.New(slog.NewTextHandler(&log, nil)))
	clock := time.Unix(1000, 0)
	f.now = func() time.Time { return clock }
	f.SetRecords([]store.Host{{Name: "vm"}, {Name: "dead"}})
	f.report()
	clock = clock.Add(time.Second)
	f.Beat("vm", agentapi.Beat{})
	f.report()
	if strings.Contains(log.String(), "host down") || strings.Count(log.String(), `msg="host up" host=vm`) != 1 {
		t.Fatalf("start-up log:\n%s\nwant vm up and no host down", log.String())
	}
	clock = clock.Add(DownAfter)
	f.report()
	f.report()
	if strings.Count(log.String(), `msg="host down" host=dead`) != 1 || strings.Contains(log.String(), `host=vm why`) {
		t.Fatalf("log:\n%s\nwant the silent host down once", log.String())
	}
}
