package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upscalehq/upscale/e2e/rig"
)

// upscale server stop (make stop) leaves nothing running: the server,
// HAProxy (which outlives a server restart on purpose), the app's
// containers, the agent's bridge; what make run started, from another
// shell.
func TestServerStopLeavesNothing(t *testing.T) {
	d := newDeployWorld(t)
	d.mustPush(t, rig.Repo(t, helloApp(t, "running", "runtime: python\n")), "acme/web")
	d.mustServe(t, "acme/web", "running\n")
	if len(d.containers(t)) == 0 {
		t.Fatal("no container runs before the stop")
	}

	out, errs, code := d.srv.Local("server", "stop")
	if code != 0 {
		t.Fatalf("server stop: exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{"Stopped the server (pid ", "Stopped HAProxy.", "Removed the local agent's containers, bridge and NAT rule."} {
		if !strings.Contains(out, want) {
			t.Errorf("server stop said:\n%s%s\nwant %q", out, errs, want)
		}
	}
	for _, port := range []int{d.srv.Port, d.srv.HTTPPort} {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			t.Errorf("port %d still answers after server stop", port)
		}
	}
	if got := d.containers(t); len(got) != 0 {
		t.Errorf("containers after server stop: %v", got)
	}
	if err := exec.Command("ip", "link", "show", d.srv.Agent.Bridge).Run(); err == nil {
		t.Errorf("bridge %s is still there", d.srv.Agent.Bridge)
	}
	for _, f := range []string{"run/server.pid", "router/haproxy.pid"} {
		if _, err := os.Stat(filepath.Join(d.srv.Data, f)); err == nil {
			t.Errorf("%s is left behind", f)
		}
	}
	// Again: nothing to stop is no error.
	if out, errs, code := d.srv.Local("server", "stop"); code != 0 || !strings.Contains(out, "No server runs") {
		t.Errorf("a second server stop: exit %d\n%s%s", code, out, errs)
	}
}
