package e2e

import (
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
