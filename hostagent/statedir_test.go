package hostagent

import (
	"os"
	"path/filepath"
	"testing"
)

// An agent's state directory is its own, but for traversal, whether it is
// new or left 0755 by an older agent.
func TestPrepareStateDir(t *testing.T) {
	base := t.TempDir()
	fresh := filepath.Join(base, "new", "state")
	old := filepath.Join(base, "old")
	os.Mkdir(old, 0o755)
	os.Chmod(old, 0o777)
	for _, dir := range []string{fresh, old} {
		if err := PrepareStateDir(dir); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm() != 0o711 {
			t.Errorf("%s: %v, mode %o; want 0711", dir, err, fi.Mode().Perm())
		}
	}
}
