package e2e

import (
	"testing"

	"github.com/upscalehq/upscale/e2e/rig"
)

// TestMultiHost runs the scenarios of issue 4 on one world of three real
// hosts; the subtests run in order and each leaves the world as the next
// expects.
func TestMultiHost(t *testing.T) {
	w := newHostsWorld(t)
	w.dumpOnFailure(t)

	t.Run("instances 2 land on two hosts and both answer", func(t *testing.T) {
		dir := rig.Repo(t, multiHostApp(t, "web", "runtime: python\ninstances: 2\nmemory: 128M\n"))
		w.mustPush(t, dir, "acme/web")
		where := w.placement(t, "acme/web")
		if len(where) != 2 {
			t.Fatalf("acme/web runs on %v, want two distinct hosts", where)
		}
		seen := w.bodies(t, "acme/web", 40)
		if len(seen) != 2 {
			t.Fatalf("40 requests got %d distinct bodies (%s), want 2 (one per instance)", len(seen), fmtMap(seen))
		}
		for _, list := range where {
			if seen["web "+list[0]+"\n"] == 0 {
				t.Errorf("instance %s never answered; bodies: %s", list[0], fmtMap(seen))
			}
		}
	})
}
