package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upscalehq/upscale/e2e/rig"
)

// The host key survives restarts (known_hosts stays valid), state
// survives restarts, SIGTERM stops the server cleanly, and a second server
// on the same data directory is refused.
func TestServerRestartKeepsHostKeyAndState(t *testing.T) {
	w := newWorld(t)
	known := filepath.Join(t.TempDir(), "known_hosts")
	strict := func() (string, string, int) {
		cmd := append(w.srv.SSHCommand(w.admin.key), "-o", "StrictHostKeyChecking=accept-new", "-o", "UserKnownHostsFile="+known, "upscale@127.0.0.1", "app", "list")
		return rig.Exec(exec.Command(cmd[0], cmd[1:]...), "")
	}
	if _, errs, code := strict(); code != 0 {
		t.Fatalf("first connection: %s", errs)
	}
	empty := filepath.Join(t.TempDir(), "empty.yaml")
	os.WriteFile(empty, nil, 0o600)
	other := exec.Command(bin, "server", "--data", w.srv.Data, "--listen", fmt.Sprintf("127.0.0.1:%d", rig.FreePort(t)), "--config", empty)
	if _, errs, code := rig.Exec(other, ""); code == 0 || !strings.Contains(errs, "another upscale server is running with data directory") {
		t.Fatalf("second server on the same data: exit %d\n%s", code, errs)
	}
	if err := w.srv.Stop(); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, w.srv.Log())
	}
	if !strings.Contains(w.srv.Log(), "upscale server stopped") {
		t.Fatalf("no clean stop in the log:\n%s", w.srv.Log())
	}
	w.srv.Run()
	out, errs, code := strict()
	if code != 0 || !strings.Contains(out, "acme/web") {
		t.Fatalf("after restart (same host key expected): exit %d\n%s%s", code, out, errs)
	}
}

// upscale.yaml sets what flags don't; a typo in it is an error.
func TestSettingsFile(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "upscale.yaml")
	os.WriteFile(cfg, []byte("data: "+data+"\ndomain: apps.example.com\n"), 0o600)
	if _, errs, code := rig.Exec(exec.Command(bin, "--config", cfg, "namespace", "create", "acme"), ""); code != 0 {
		t.Fatal(errs)
	}
	out, errs, code := rig.Exec(exec.Command(bin, "--config", cfg, "app", "create", "acme/web"), "")
	if code != 0 || !strings.Contains(out, "http://web.acme.apps.example.com") {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(data, "repos", "acme", "web.git")); err != nil {
		t.Fatalf("data dir from upscale.yaml not used: %v", err)
	}
	os.WriteFile(cfg, []byte("domian: x\n"), 0o600)
	_, errs, code = rig.Exec(exec.Command(bin, "--config", cfg, "app", "list"), "")
	if code == 0 || !strings.Contains(errs, `unknown setting "domian"`) || strings.Count(errs, "\n") != 1 {
		t.Fatalf("typo in upscale.yaml: exit %d %q", code, errs)
	}
}
