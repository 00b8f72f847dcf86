package hostagent

import (
	"fmt"
	"os"
)

// StateDirMode is the agent's state directory's: its owner's alone, but
// for traversal. The containers' root, a host uid of their own, must
// reach down to its rootfs and release under containers/ and releases/ (LXC
// mounts them inside the containers' user namespace); without read it
// cannot list what else is there: other containers' names, build
// outboxes, metadata.
const StateDirMode = 0o711

// PrepareStateDir makes dir with StateDirMode, and gives an existing one
// that mode: a directory made by an older agent (0755) or by hand.
func PrepareStateDir(dir string) error {
	if err := os.MkdirAll(dir, StateDirMode); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if err := os.Chmod(dir, StateDirMode); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	return nil
}
