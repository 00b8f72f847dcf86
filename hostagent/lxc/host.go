// What New checks and holds on the host: the cgroup limit keys, the LXCPath lock, a root that can reach LXCPath.

package lxc

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// detectCgroups picks the limit keys LXC applies. On a hybrid host (v1
// controllers plus an empty unified tree) memory and pids live on v1.
func (r *Runtime) detectCgroups() {
	if data, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		r.cgroup2 = true
		if !strings.Contains(string(data), "memory") {
			return
		}
		// The root cgroup has no memory.swap.max; look at our own.
		if own := cgroupOf("self"); own != "" {
			_, err := os.Stat(filepath.Join("/sys/fs/cgroup", own, "memory.swap.max"))
			r.swapKey = err == nil
		}
		return
	}
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	r.swapKey = err == nil
}

// lockDir makes sure no other Runtime manages the same LXCPath: two would
// hand out the same addresses.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lxc: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lxc: %s is in use by another runtime: %w", dir, err)
	}
	return f, nil
}

// checkTraversable fails early when the container's root (host uid base)
// could not reach dir: LXC mounts the overlay inside the user namespace, so
// a 0700 parent (t.TempDir, a umask 077 /var/lib) makes every start fail
// with a confusing "Permission denied" deep in LXC's log.
func checkTraversable(dir string, base uint32) error {
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		sys, _ := st.Sys().(*syscall.Stat_t)
		mode := st.Mode().Perm()
		switch {
		case mode&0o001 != 0:
		case sys != nil && sys.Uid == base && mode&0o100 != 0:
		case sys != nil && sys.Gid == base && mode&0o010 != 0:
		default:
			return fmt.Errorf("%s (mode %o) cannot be traversed by uid %d, the containers' root: chmod o+x it", d, mode, base)
		}
		if d == "/" || d == "." {
			return nil
		}
	}
}
