// Observed state: Get, List, and what the launcher recorded of a container's last run.

package lxc

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	golxc "github.com/lxc/go-lxc"
)

func (r *Runtime) state(c *ctr) (string, error) {
	if r.stateHook != nil {
		return r.stateHook(c), nil
	}
	lx, err := c.lxc(r.cfg.LXCPath)
	if err != nil {
		return "", err
	}
	return strings.ToLower(lx.State().String()), nil
}

// Get returns the container's current state.
func (r *Runtime) Get(name string) (Container, error) {
	c, err := r.get(name)
	if err != nil {
		return Container{}, err
	}
	return r.status(c), nil
}

// List returns every container under LXCPath, sorted by name.
func (r *Runtime) List() ([]Container, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	var ctrs []*ctr
	for _, c := range r.ctrs {
		c.mu.Lock()
		if c.ready {
			ctrs = append(ctrs, c)
		}
		c.mu.Unlock()
	}
	r.mu.Unlock()
	sort.Slice(ctrs, func(i, j int) bool { return ctrs[i].name < ctrs[j].name })
	out := make([]Container, 0, len(ctrs))
	for _, c := range ctrs {
		out = append(out, r.status(c))
	}
	return out, nil
}

func (r *Runtime) status(c *ctr) Container {
	c.mu.Lock()
	m := c.meta
	c.mu.Unlock()
	out := Container{Name: c.name, IP: m.IP, State: "unknown", ExitCode: -1, IDMapBase: c.idBase}
	lx, err := c.lxc(r.cfg.LXCPath)
	if err != nil {
		return out
	}
	st := lx.State()
	out.State = strings.ToLower(st.String())
	out.StartedAt = m.StartedAt
	if st == golxc.STOPPED {
		out.ExitCode = r.exitCode(c, m)
		out.OOMKilled = r.oomKilled(c)
		return out
	}
	if pid := lx.InitPid(); pid > 0 {
		out.PID = pid
	}
	return out
}

// exitCode prefers what the launcher wrote.
func (r *Runtime) exitCode(c *ctr, m meta) int {
	if code, ok := parseExitCode(r.stateFile(c, exitName)); ok {
		return code
	}
	return m.ExitCode
}

// oomKilled says whether the launcher found OOM kills in its cgroup. The
// container can write the file too: it can only make its own failure read
// as a lack of memory.
func (r *Runtime) oomKilled(c *ctr) bool {
	n, ok := parseCount(r.stateFile(c, oomName))
	return ok && n > 0
}

// stateFile reads a small file the launcher wrote. It is in the
// container's writable layer, so it is read through an os.Root (no symlink
// leads out), only if regular, and bounded; nil when unreadable.
func (r *Runtime) stateFile(c *ctr, name string) []byte {
	root, err := os.OpenRoot(filepath.Join(c.dir, "upper"))
	if err != nil {
		return nil
	}
	defer root.Close()
	f, err := root.OpenFile(filepath.Join(stateDirIn[1:], name), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil
	}
	buf := make([]byte, 24)
	n, _ := f.Read(buf)
	return buf[:n]
}
