package healing

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/fleet"
	"github.com/upscalehq/upscale/store"
)

// changed tells the fleet's OnChange, as Watch wired it, that host went
// up or down, and waits for what that set off.
func changed(t *testing.T, r *rig, host, provider string, up bool) {
	t.Helper()
	f := fleet.New(slog.New(slog.DiscardHandler))
	r.hl.Watch(t.Context(), f, time.Hour)
	if f.OnChange == nil {
		t.Fatal("Watch left the fleet's OnChange unset: hosts coming and going change nothing")
	}
	f.OnChange(fleet.Host{Beat: agentapi.Beat{Info: agentapi.Info{Name: host}}, Record: store.Host{Name: host, Provider: provider}, Up: up})
	r.hl.bg.Wait()
}

// A host going down is healed at once: its instances are replaced on the
// others, not at the next pass (an hour away here).
func TestHostDownHeals(t *testing.T) {
	r, hs, ins := threeHosts(t)
	dead := ins[0]
	hs.Set(dead.Host, false, store.HostActive)
	changed(t, r, dead.Host, "ssh", false)
	now, _ := r.st.ListInstances(context.Background(), "acme", "web")
	if len(now) != 2 || slices.Contains(hostsOf(now), dead.Host) {
		t.Fatalf("after %s went down: %+v", dead.Host, now)
	}
	if len(r.routed) != 0 {
		t.Errorf("routed %v for a host that went down", r.routed)
	}
}

// A host coming up gets its containers routed, and takes instances over
// when the operator asked for auto-rebalance, unless it is the server's
// own box.
func TestHostUpRoutesAndRebalances(t *testing.T) {
	for _, tc := range []struct {
		name, provider string
		auto           bool
		want           []string // hosts of the instances after
	}{
		{"auto-rebalance", "ssh", true, []string{"h1", "h2"}},
		{"no auto-rebalance", "ssh", false, []string{"h1", "h1"}},
		{"the local host", "local", true, []string{"h1", "h1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.auto)
			r.hosts.Set("h1", true, store.HostActive)
			r.push(t, web(2))
			r.hosts.All[0].Containers = 2
			r.hosts.Set("h2", true, store.HostActive)
			changed(t, r, "h2", tc.provider, true)
			if !slices.Equal(r.routed, []string{"h2"}) {
				t.Errorf("routed %v, want h2's containers", r.routed)
			}
			ins, _ := r.st.ListInstances(context.Background(), "acme", "web")
			if got := hostsOf(ins); !slices.Equal(got, tc.want) {
				t.Errorf("instances on %v, want %v", got, tc.want)
			}
		})
	}
}
