package commands

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/upscalehq/upscale/backend"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// fakeUsage is what the server would say of a namespace: its store
// quotas, the stock defaults, and 3 instances of 512M with 1 exec running.
func fakeUsage(st store.Store, defaults store.Quota) backend.UsageFunc {
	return func(ctx context.Context, ns string) (own, inForce, use store.Quota, err error) {
		n, err := st.GetNamespace(ctx, ns)
		if err != nil {
			return own, inForce, use, err
		}
		return n.Quota, n.Quota.Or(defaults), store.Quota{Apps: n.Apps, Instances: 3, Memory: 3 * 512 << 20, Exec: 1}, nil
	}
}

func TestNamespaceQuotaAndInfo(t *testing.T) {
	w := newWorld(t)
	rewire(w.env, nil, nil, store.Quota{Apps: 20, Instances: 40, Memory: 8 << 30}, true) // exec: no limit

	out := mustRun(t, w.env, w.admin, "", "namespace", "quota", "set", "acme", "apps=3", "memory=1536M")
	if want := "Quotas of namespace acme: apps=3 instances=40 (default) memory=1536M exec=none (default)\n"; out != want {
		t.Errorf("quota set said %q, want %q", out, want)
	}
	out = mustRun(t, w.env, w.member, "", "namespace", "info", "acme")
	for _, want := range []string{
		"Namespace:  acme\n",
		"QUOTA      USED   LIMIT\n" +
			"apps       2      3\n" +
			"instances  3      40 (default)\n" +
			"memory     1536M  1536M\n" +
			"exec       1      none (default)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("namespace info has no %q:\n%s", want, out)
		}
	}
	var v namespaceInfoView
	if err := json.Unmarshal([]byte(mustRun(t, w.env, w.member, "", "namespace", "info", "acme", "--format", "json")), &v); err != nil {
		t.Fatal(err)
	}
	if v.Name != "acme" || v.Apps != (quotaUse{2, 3, false}) || v.Memory != (quotaUse{3 * 512 << 20, 1536 << 20, false}) ||
		v.Instances != (quotaUse{3, 40, true}) || v.Exec != (quotaUse{1, 0, true}) {
		t.Errorf("namespace info --format json: %+v", v)
	}

	// default goes back to the operator's value; other keys stay.
	out = mustRun(t, w.env, w.admin, "", "namespace", "quota", "set", "acme", "apps=default", "exec=2")
	if want := "Quotas of namespace acme: apps=20 (default) instances=40 (default) memory=1536M exec=2\n"; out != want {
		t.Errorf("quota set said %q, want %q", out, want)
	}
}

func TestNamespaceQuotaBadInput(t *testing.T) {
	w := newWorld(t)
	mustRun(t, w.env, w.admin, "", "namespace", "quota", "set", "acme", "instances=5")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"acme"}, "error: ssh upscale@host namespace quota set needs NAME and at least one KEY=VALUE (keys: apps, instances, memory, exec)\n"},
		{[]string{"acme", "apps"}, `error: "apps": write each quota as KEY=VALUE, such as instances=40 (keys: apps, instances, memory, exec)` + "\n"},
		{[]string{"acme", "cpu=2"}, `error: "cpu" is not a quota; the quotas are apps, instances, memory, exec` + "\n"},
		{[]string{"acme", "apps=0"}, "error: apps=0: want a whole number from 1 to 1000000, or default\n"},
		{[]string{"acme", "apps=-1"}, "error: apps=-1: want a whole number from 1 to 1000000, or default\n"},
		{[]string{"acme", "exec=lots"}, "error: exec=lots: want a whole number from 1 to 1000000, or default\n"},
		{[]string{"acme", "memory=8"}, "error: memory=8: want a size from 64M to 1048576G such as 8G or 512M, or default\n"},
		{[]string{"acme", "memory=1M"}, "error: memory=1M: want a size from 64M to 1048576G such as 8G or 512M, or default\n"},
		{[]string{"acme", "apps=2", "apps=3"}, "error: quota apps is given twice\n"},
		{[]string{"acme", "apps=2", "exec=x"}, "error: exec=x: want a whole number from 1 to 1000000, or default\n"},
		{[]string{"nope", "apps=2"}, "error: namespace nope not found\n"},
		{[]string{"Bad!", "apps=2"}, "error: "},
	} {
		before := snapshot(t, w.env)
		r := run(w.env, w.admin, "", append([]string{"namespace", "quota", "set"}, tc.args...)...)
		if r.code == 0 || !strings.HasPrefix(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 || r.stdout != "" {
			t.Errorf("quota set %v: exit %d, stderr %q, want %q", tc.args, r.code, r.stderr, tc.want)
		}
		if after := snapshot(t, w.env); after != before {
			t.Errorf("quota set %v changed the store", tc.args)
		}
	}
	if q, _ := w.env.Store.GetNamespace(context.Background(), "acme"); q.Quota != (store.Quota{Instances: 5}) {
		t.Errorf("after refusals acme's quota is %+v", q.Quota)
	}
	r := run(w.env, w.admin, "", "namespace", "info", "acme")
	if r.code != 1 || r.stderr != "error: what a namespace uses is the server's to know: ssh upscale@HOST namespace info acme\n" {
		t.Errorf("namespace info without a server: %d %q", r.code, r.stderr)
	}
}

// app create over the apps quota names the namespace, the quota and the
// command that raises it, and creates nothing (no repository either).
func TestAppCreateOverQuota(t *testing.T) {
	w := newWorld(t) // acme has web and api
	rewire(w.env, nil, nil, store.Quota{Apps: 2}, false)
	before := snapshot(t, w.env)
	r := run(w.env, w.member, "", "app", "create", "acme/shop")
	want := "error: namespace acme already has 2 app(s), its apps quota; an admin raises it with: ssh upscale@host namespace quota set acme apps=N\n"
	if r.code != 1 || r.stderr != want {
		t.Errorf("app create over the default quota: %d %q, want %q", r.code, r.stderr, want)
	}
	if after := snapshot(t, w.env); after != before {
		t.Errorf("a refused app create changed the store:\n%s", after)
	}
	if p, _ := w.env.Repos.Path(names.App{Namespace: "acme", Name: "shop"}); exists(p) {
		t.Errorf("a refused app create left a repository at %s", p)
	}
	mustRun(t, w.env, w.admin, "", "namespace", "quota", "set", "acme", "apps=3")
	mustRun(t, w.env, w.member, "", "app", "create", "acme/shop")
	r = run(w.env, w.member, "", "app", "create", "acme/blog")
	if want := "error: namespace acme already has 3 app(s), its apps quota; an admin raises it with: ssh upscale@host namespace quota set acme apps=N\n"; r.stderr != want {
		t.Errorf("app create over its own quota: %q", r.stderr)
	}
	// Another namespace has the default.
	mustRun(t, w.env, w.outsider, "", "app", "create", "globex/shop")
	if r := run(w.env, w.outsider, "", "app", "create", "globex/blog"); !strings.Contains(r.stderr, "namespace globex already has 2 app(s)") {
		t.Errorf("globex's third app: %q", r.stderr)
	}
}

func FuzzParseQuota(f *testing.F) {
	for _, s := range []string{"apps=20 instances=40 memory=8G exec=4", "memory=default", "apps=0", "memory=512MiB exec=default", "x=1", "apps"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c, err := parseQuota(strings.Fields(line))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of more than one line: %q", err)
			}
			return
		}
		for _, p := range []*int{c.Apps, c.Instances, c.Exec} {
			if p != nil && (*p < 0 || *p > maxQuotaCount) {
				t.Fatalf("%q: a count of %d", line, *p)
			}
		}
		if c.Memory != nil && *c.Memory != 0 && (*c.Memory < minQuotaMemory || *c.Memory > maxQuotaMemory) {
			t.Fatalf("%q: memory %d", line, *c.Memory)
		}
	})
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
