// Adoption: a new Runtime takes over the containers a previous one left under LXCPath.

package lxc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// load adopts the containers a previous Runtime left under LXCPath.
func (r *Runtime) load() error {
	entries, err := os.ReadDir(r.cfg.LXCPath)
	if err != nil {
		return fmt.Errorf("lxc: %w", err)
	}
	r.cursor = r.gateway
	for _, e := range entries {
		if !e.IsDir() || validName(e.Name()) != nil {
			continue
		}
		dir, err := r.dir(e.Name())
		if err != nil {
			return err
		}
		data, err := os.ReadFile(filepath.Join(dir, metaFile))
		if errors.Is(err, fs.ErrNotExist) {
			continue // not ours, or a Create that died before reserving
		}
		if err != nil {
			return fmt.Errorf("lxc: %w", err)
		}
		m, err := decodeMeta(data)
		if err != nil || m.Name != e.Name() {
			return fmt.Errorf("lxc: %s: bad %s: %v", dir, metaFile, err)
		}
		c := &ctr{name: m.Name, dir: dir, idBase: m.IDMapBase, meta: m, ready: true}
		if c.idBase == 0 {
			// Made before containers had ranges of their own: in the one
			// range every container had then, the recorded one.
			c.idBase = r.cfg.IDMapBase
		}
		if b, err := os.ReadFile(filepath.Join(dir, logBaseFile)); err == nil {
			c.logBase, c.logMidLine = parseLogBase(b)
		}
		// Open the log now so the capper covers containers that kept
		// running while no agent was there.
		if root, err := os.OpenRoot(filepath.Join(dir, "upper")); err == nil {
			c.logF, _ = openLog(root, false, int(c.idBase))
			root.Close()
		}
		r.ctrs[m.Name] = c
		if r.cfg.Subnet.Contains(m.IP) && r.cursor.Less(m.IP) {
			r.cursor = m.IP
		}
	}
	return nil
}
