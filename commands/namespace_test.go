package commands

import (
	"strings"
	"testing"
)

// A namespace named like the platform's own words is refused in one line
// and not created; other names still are.
func TestNamespaceCreateRefusesReservedNames(t *testing.T) {
	w := newWorld(t)
	for _, name := range []string{"build", "upscale", "www"} {
		r := run(w.env, w.admin, "", "namespace", "create", name)
		if want := `error: namespace name "` + name + `" is reserved for the platform; choose another` + "\n"; r.code == 0 || r.stderr != want {
			t.Errorf("namespace create %s: exit %d, stderr %q, want %q", name, r.code, r.stderr, want)
		}
	}
	mustRun(t, w.env, w.admin, "", "namespace", "create", "builders")
	list := mustRun(t, w.env, w.admin, "", "namespace", "list")
	for _, l := range strings.Split(list, "\n") {
		if f := strings.Fields(l); len(f) > 0 && (f[0] == "build" || f[0] == "upscale" || f[0] == "www") {
			t.Errorf("a reserved namespace was created:\n%s", list)
		}
	}
	if !strings.Contains(list, "builders ") {
		t.Errorf("namespace list lacks builders:\n%s", list)
	}
}
