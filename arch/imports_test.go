// Package arch holds rules of the code's shape as tests: the import rules of
// docs/architecture.md, and no production file over 600 lines.
package arch

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/upscalehq/upscale/"

// imports maps each package of the module (relative name) to the module's
// packages it imports, tests left out.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], module)
		m[pkg] = nil
		for _, imp := range f[1:] {
			if strings.HasPrefix(imp, module) {
				m[pkg] = append(m[pkg], strings.TrimPrefix(imp, module))
			}
		}
	}
	return m
}

// under reports whether pkg is one of prefixes or below one.
func under(pkg string, prefixes ...string) bool {
	return slices.ContainsFunc(prefixes, func(p string) bool { return pkg == p || strings.HasPrefix(pkg, p+"/") })
}

type rule struct {
	what      string
	from      []string // packages (and those below) the rule applies to
	forbidden []string // packages (and below) they may not import; nil: every module package
}

var rules = []rule{
	{"engines and shared packages import no transport, use case or program",
		[]string{"builder", "repos", "router", "fleet", "scheduler", "store", "bus", "cloud", "dnsproof", "certs", "certbundle", "gluster", "agentapi", "hostagent",
			"appspec", "runtimes", "procfile", "detect", "names", "keys", "atomicfile", "msgtext", "shellquote", "yamlerr"},
		[]string{"backend", "commands", "gitd", "deploy", "healing", "hostops", "cmd"}},
	{"the agent's side imports nothing of the server's",
		[]string{"hostagent"},
		[]string{"deploy", "fleet", "store", "router", "commands", "gitd", "hostops", "cloud", "builder", "scheduler", "repos", "keys"}},
	{"deploy imports no transport, no program, not the application layer and not healing, which builds on it",
		[]string{"deploy"},
		[]string{"backend", "commands", "gitd", "hooks", "healing", "cmd"}},
	{"healing imports no transport, no program, not the application layer and not hostops",
		[]string{"healing"},
		[]string{"backend", "commands", "gitd", "hooks", "hostops", "cmd"}},
	{"the application layer imports no transport and no program",
		[]string{"backend"},
		[]string{"commands", "gitd", "cmd"}},
	{"gitd is a thin transport: SSH, sessions, git's transport and the hook socket, over the application layer",
		[]string{"gitd"},
		[]string{"appspec", "builder", "deploy", "runtimes", "store", "router", "scheduler", "fleet", "hostops", "cloud"}},
	{"the command tree is a transport: it calls the application layer, not the engines",
		[]string{"commands"},
		[]string{"deploy", "healing", "hostops", "fleet", "hostagent", "store", "cloud", "bus", "router", "builder", "scheduler"}},
	{"the certificate engine hands certificates to whoever installs them (OnCert) and knows no router",
		[]string{"certs"},
		[]string{"router", "fleet", "builder", "bus", "hostagent", "agentapi"}},
	{"detection is pure: it reads a commit through its small Files interface (repos.Source fits) and runs nothing",
		[]string{"detect", "procfile"},
		[]string{"repos", "store", "bus", "agentapi", "hostagent", "builder", "router", "fleet", "scheduler", "certs", "cloud"}},
	{"the storage engine drives GlusterFS and mounts volumes; it knows no store, bus or agent",
		[]string{"gluster"},
		[]string{"store", "bus", "agentapi", "hostagent", "fleet", "router", "builder", "scheduler"}},
	{"the leaves import no Upscale package",
		[]string{"names", "keys", "atomicfile", "msgtext", "shellquote", "scheduler", "hostagent/subids", "dnsproof", "certbundle", "mountinfo", "schedslice"},
		nil},
}

func TestImportRules(t *testing.T) {
	all := imports(t)
	if len(all) < 20 || all["deploy"] == nil {
		t.Fatalf("go list found %d packages, deploy importing %v: the rules below could not fail", len(all), all["deploy"])
	}
	for _, r := range rules {
		for pkg, imps := range all {
			if !under(pkg, r.from...) {
				continue
			}
			for _, imp := range imps {
				if r.forbidden == nil || under(imp, r.forbidden...) {
					t.Errorf("%s imports %s, against the rule: %s (docs/architecture.md)", pkg, imp, r.what)
				}
			}
		}
	}
}
