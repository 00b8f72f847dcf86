package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/upscalehq/upscale/e2e/rig"
)

// gitLocal runs git in the work tree dir for local chores (no server).
func gitLocal(dir string, args ...string) (string, string, int) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = rig.GitEnv(dir)
	return rig.Exec(cmd, "")
}

// gitOut is gitLocal that must succeed; it returns trimmed stdout.
func gitOut(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, errs, code := gitLocal(dir, args...)
	if code != 0 {
		t.Fatalf("git %v: %s", args, errs)
	}
	return strings.TrimSpace(out)
}

func execCmd(argv []string) *exec.Cmd { return exec.Command(argv[0], argv[1:]...) }

// helloApp is the example Python app answering msg, with appYAML as its
// app.yaml.
func helloApp(t *testing.T, msg, appYAML string) map[string]string {
	t.Helper()
	code, err := os.ReadFile("../examples/python/app.py")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(appYAML, "MESSAGE") {
		appYAML += "env:\n  MESSAGE: " + msg + "\n"
	}
	return map[string]string{"app.yaml": appYAML, "app.py": string(code)}
}
