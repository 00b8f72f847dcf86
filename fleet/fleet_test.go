package fleet

import (
	"log/slog"
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
