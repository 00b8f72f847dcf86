package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// Each example app deploys with its runtime and answers through HAProxy; a
// second push with a change serves the change and replaces the instance;
// `runtimes list` then shows the images as built on this host.
func TestDeployRuntimes(t *testing.T) {
	d := newDeployWorld(t)
	d.ssh(t, "app", "create", "acme/rb")
	for _, tc := range []struct {
		runtime, app, body string
		change             func(files map[string]string)
		changed            string
	}{
		{"python", "acme/web", "Hello from Python on Upscale!\n", func(f map[string]string) {
			// Edit the code itself.
			f["app.py"] = strings.Replace(f["app.py"], `"Hello from Python on Upscale!"`, `"Python, edited"`, 1)
		}, "Python, edited\n"},
		{"php", "acme/api", "Hello from PHP on Upscale!\n", func(f map[string]string) {
			f["app.yaml"] += "env:\n  MESSAGE: PHP, configured\n"
		}, "PHP, configured\n"},
		{"ruby", "acme/rb", "Hello from Ruby on Upscale!\n", func(f map[string]string) {
			f["app.yaml"] += "env:\n  MESSAGE: Ruby, configured\n"
		}, "Ruby, configured\n"},
	} {
		t.Run(tc.runtime, func(t *testing.T) {
			files := exampleFiles(t, tc.runtime)
			dir := rig.Repo(t, files)
			errs := d.mustPush(t, dir, tc.app)
			ns, name, _ := strings.Cut(tc.app, "/")
			mustHave(t, errs, "remote:        runtime "+tc.runtime+", 1 instance(s): ok",
				"remote: -----> Building with "+tc.runtime,
				"remote: =====> Application deployed: http://"+name+"."+ns+".upscale.localhost:",
				"(v1)")
			d.mustServe(t, tc.app, tc.body)
			first := d.running(t, tc.app)

			tc.change(files)
			head := rig.Commit(t, dir, "change the message", files)
			mustHave(t, d.mustPush(t, dir, tc.app), "(v2)", "-----> v2 is live; removing 1 old instance(s)")
			d.mustServe(t, tc.app, tc.changed)
			if got := d.branch(t, tc.app); got != head {
				t.Errorf("master is %s, want %s", got, head)
			}
			ps := d.ps(t, tc.app)
			if len(ps) != 1 || ps[0].Release != 2 || ps[0].State != "running" || ps[0].Name == first[0] {
				t.Errorf("app ps after the second push: %+v; want one running v2 instance other than %s", ps, first[0])
			}
			if info := d.info(t, tc.app); info.Release != "v2" || info.Instances != 1 {
				t.Errorf("app info: %+v", info)
			}
		})
	}
	// One instance per app is left, the old ones are gone.
	if got := d.containers(t); len(got) != 3 {
		t.Errorf("containers on the host: %v, want the 3 live instances", got)
	}

	t.Run("runtimes list", func(t *testing.T) {
		var hosts []struct{ Name string }
		json.Unmarshal([]byte(d.ssh(t, "hosts", "list", "--format", "json")), &hosts)
		if len(hosts) != 1 {
			t.Fatalf("hosts: %+v", hosts)
		}
		var rts []struct {
			Name    string   `json:"name"`
			BuiltOn []string `json:"built_on"`
		}
		// Hosts report their images with their heartbeats: the last one
		// built may take a beat to show.
		built := map[string][]string{}
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if err := json.Unmarshal([]byte(d.ssh(t, "runtimes", "list", "--format", "json")), &rts); err != nil {
				t.Fatal(err)
			}
			for _, r := range rts {
				built[r.Name] = r.BuiltOn
			}
			if len(built["python"])+len(built["php"])+len(built["ruby"]) == 3 || time.Now().After(deadline) {
				break
			}
		}
		for _, rt := range []string{"python", "php", "ruby"} {
			if b := built[rt]; len(b) != 1 || b[0] != hosts[0].Name {
				t.Errorf("runtime %s built on %v, want [%s]", rt, b, hosts[0].Name)
			}
		}
		text := d.ssh(t, "runtimes", "list")
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, "python ") && !strings.Contains(line, "built on 1/1 host(s)") {
				t.Errorf("runtimes list, python row: %q; want it built on 1/1 host(s)", line)
			}
		}
		if !strings.Contains(text, "built on 1/1 host(s)") {
			t.Errorf("runtimes list:\n%s", text)
		}
	})
}
