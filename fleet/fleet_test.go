package fleet

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upscalehq/upscale/hostagent"
	"github.com/upscalehq/upscale/store"
)

func TestHostsGoDownWhenSilent(t *testing.T) {
	f := New(slog.New(slog.DiscardHandler))
	clock := time.Unix(1000, 0)
	f.now = func() time.Time { return clock }
	f.SetRecords([]store.Host{{Name: "h2", Address: "10.0.0.2", Weight: 2}, {Name: "h1", State: store.HostDraining}, {Name: "h3"}})
	var changes []string
	f.OnChange = func(h Host) { changes = append(changes, h.Name+"="+h.State) }
	f.Beat("h2", hostagent.Beat{Info: hostagent.Info{Name: "spoofed", CPUs: 2}})
	f.Beat("h1", hostagent.Beat{})
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
	f.Beat("h1", hostagent.Beat{})
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

// hangingBus answers status calls for "fast" at once and never for
// "stuck" (until the call's context ends).
type hangingBus struct {
	mu    sync.Mutex
	calls map[string]int
}

func (b *hangingBus) Call(ctx context.Context, subject string, _, resp any, _ func(string)) error {
	b.mu.Lock()
	b.calls[subject]++
	b.mu.Unlock()
	if strings.Contains(subject, "stuck") {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func TestWatchIsNotHeldUpBySilentHosts(t *testing.T) {
	f := New(slog.New(slog.DiscardHandler))
	bus := &hangingBus{calls: map[string]int{}}
	records := func(context.Context) ([]store.Host, error) {
		return []store.Host{{Name: "fast"}, {Name: "stuck"}}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	f.Watch(ctx, bus, records, 50*time.Millisecond)
	bus.mu.Lock()
	defer bus.mu.Unlock()
	fast := bus.calls[hostagent.Subject("fast", hostagent.MethodStatus)]
	stuck := bus.calls[hostagent.Subject("stuck", hostagent.MethodStatus)]
	// Every 50 ms for fast; stuck is asked again only once its question
	// timed out (100 ms).
	if fast < 9 || stuck > 7 {
		t.Errorf("in 600 ms: %d questions to the answering host (want about 12), %d to the silent one (want at most 6)", fast, stuck)
	}
	up := f.Up()
	if len(up) != 1 || up[0].Name != "fast" {
		t.Errorf("up = %+v, want fast only", up)
	}
}
