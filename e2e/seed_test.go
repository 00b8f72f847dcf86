package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/upscalehq/upscale/e2e/rig"
)

// The seed's own commands, verbatim, through OpenSSH.
func TestSeedCommands(t *testing.T) {
	srv := rig.StartWithAgent(t, bin)
	me := rig.NewKey(t, "me")
	// The first admin key is added locally, as the README says.
	if out := mustLocal(t, srv, "keys", "add", "--admin", "--name", "me", "--public", me.Public); !strings.Contains(out, "added as an admin key") {
		t.Fatalf("local keys add: %q", out)
	}
	if out := mustSSH(t, srv, me, "", "namespace", "create", "--namespace", "test"); out != "Namespace test created.\n" {
		t.Fatalf("namespace create: %q", out)
	}
	mustSSH(t, srv, me, "", "namespace", "create", "other")
	out := mustSSH(t, srv, me, "", "app", "create", "--namespace", "test", "--application", "test")
	// Named as the user reached it over loopback: localhost, as the README has it.
	remote := strings.Replace(srv.Remote("test/test"), "@127.0.0.1:", "@localhost:", 1)
	if !strings.Contains(out, "git remote add upscale "+remote) {
		t.Fatalf("app create does not show the remote %s:\n%s", remote, out)
	}
	mustSSH(t, srv, me, "", "app", "create", "other/two")

	// keys add exactly as the seed writes it: the key text unquoted on
	// the remote side (the local shell's quotes are gone once ssh joins
	// the words).
	user := rig.NewKey(t, "user")
	mustSSH(t, srv, me, "", "keys add --namespace test --name test --public "+user.Public)
	// The same key can't be added twice, under any name.
	_, errs, code := srv.SSH(me, "", "keys", "add", "--namespace", "test", "--name", "again", "--public", "'"+user.Public+"'")
	oneErrorLine(t, "duplicate key", errs, code, "is already registered")
	// Key text on stdin, and a deploy key of one app.
	ci := rig.NewKey(t, "ci")
	mustSSH(t, srv, me, ci.Public+"\n", "keys", "add", "--app", "test/test", "--name", "ci")

	// The namespace key works and creates apps in its own namespace.
	mustSSH(t, srv, user, "", "app", "create", "mine")
	var apps []struct{ Namespace, Name, URL string }
	if err := json.Unmarshal([]byte(mustSSH(t, srv, user, "", "app", "list", "--format", "json")), &apps); err != nil {
		t.Fatal(err)
	}
	if len(apps) != 2 || apps[0].Name != "mine" || !strings.HasPrefix(apps[1].URL, "http://test.test.upscale.localhost:") {
		t.Fatalf("namespace key's app list: %+v", apps)
	}
	if out := mustSSH(t, srv, me, "", "app", "list", "--namespace", "other"); !strings.Contains(out, "other/two") || strings.Contains(out, "test/") {
		t.Fatalf("app list --namespace other: %q", out)
	}
	if out := mustSSH(t, srv, me, "", "app", "info", "test/test"); !strings.Contains(out, "Deploy branch:  master") {
		t.Fatalf("app info: %q", out)
	}
	if out := mustSSH(t, srv, me, "", "keys", "list", "--namespace", "test"); !strings.Contains(out, "test  ") || !strings.Contains(out, "test/test") {
		t.Fatalf("keys list: %q", out)
	}
	if out := mustSSH(t, srv, me, "", "keys", "list"); !strings.Contains(out, "me ") {
		t.Fatalf("admin keys list lacks the admin key: %q", out)
	}
	if out := mustSSH(t, srv, me, "", "runtimes", "list"); !strings.Contains(out, "php") || !strings.Contains(out, "python") || !strings.Contains(out, "ruby") {
		t.Fatalf("runtimes list: %q", out)
	}
	if out := mustSSH(t, srv, me, "", "hosts", "list"); strings.Count(out, "\n") != 4 || !strings.Contains(out, " up ") || !strings.Contains(out, "\n\nrouter: haproxy up (") {
		t.Fatalf("hosts list: %q", out)
	}
	if out := mustSSH(t, srv, me, "", "help"); !strings.Contains(out, "namespace") || !strings.Contains(out, "ssh -p") {
		t.Fatalf("help: %q", out)
	}
	if out := mustSSH(t, srv, me, "", "keys", "add", "--help"); !strings.Contains(out, "--app NS/APP") {
		t.Fatalf("keys add --help: %q", out)
	}

	// Remove by name, and by fingerprint: either way the key stops working.
	mustSSH(t, srv, me, "", "keys", "remove", "ci", "--namespace", "test")
	if _, _, code := srv.SSH(ci, "", "app", "info", "test/test"); code != 255 {
		t.Fatalf("removed deploy key still connects: exit %d", code)
	}
	var ks []struct{ Name, Fingerprint string }
	json.Unmarshal([]byte(mustSSH(t, srv, me, "", "keys", "list", "--namespace", "test", "--format", "json")), &ks)
	if len(ks) != 1 || ks[0].Name != "test" {
		t.Fatalf("keys left in test: %+v", ks)
	}
	mustSSH(t, srv, me, "", "keys", "remove", ks[0].Fingerprint)
	if _, _, code := srv.SSH(user, "", "app", "list"); code != 255 {
		t.Fatalf("removed namespace key still connects: exit %d", code)
	}
	mustSSH(t, srv, me, "", "app", "delete", "other/two")
	mustSSH(t, srv, me, "", "namespace", "delete", "other")
	if out := mustSSH(t, srv, me, "", "namespace", "list"); strings.Contains(out, "other") {
		t.Fatalf("namespace list after delete: %q", out)
	}
}
