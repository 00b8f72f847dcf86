package fleet

import (
	"log/slog"
	"testing"
	"time"

	"github.com/upscalehq/upscale/hostagent"
)

func TestHostsGoDownWhenSilent(t *testing.T) {
	f := New(slog.New(slog.DiscardHandler))
	clock := time.Unix(1000, 0)
	f.now = func() time.Time { return clock }
	f.Beat("h2", hostagent.Beat{Info: hostagent.Info{Name: "spoofed", CPUs: 2}})
	f.Beat("h1", hostagent.Beat{})
	hosts := f.Hosts()
	if len(hosts) != 2 || hosts[0].Name != "h1" || hosts[1].Name != "h2" || hosts[1].CPUs != 2 || !hosts[1].Up || hosts[1].State != "up" {
		t.Fatalf("hosts %+v: want h1, h2 (named by subject, not message), both up", hosts)
	}
	clock = clock.Add(DownAfter - time.Millisecond)
	if len(f.Up()) != 2 {
		t.Fatal("a host went down before DownAfter")
	}
	f.Beat("h1", hostagent.Beat{})
	clock = clock.Add(2 * time.Millisecond)
	up := f.Up()
	if len(up) != 1 || up[0].Name != "h1" {
		t.Fatalf("up = %+v, want only h1", up)
	}
	if h := f.Hosts()[1]; h.Up || h.State != "down" {
		t.Fatalf("silent host %+v", h)
	}
}
