package lxc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/upscalehq/upscale/hostagent/subids"
)

// idmapFile, in LXCPath, records the id range the containers there were
// made with: their upper dirs and logs belong to it, so a restarted
// runtime must keep it even if a lower range has become free since.
const idmapFile = ".idmap"

// reserveIDs settles the runtime's id range: the configured one, else the
// recorded one, else a free range. It is held for root in /etc/subuid and
// /etc/subgid (newuidmap maps nothing else) and recorded.
func (r *Runtime) reserveIDs() error {
	recorded, err := readIDMap(r.cfg.LXCPath)
	if err != nil {
		return err
	}
	want := r.cfg.IDMapBase
	if want == 0 {
		want = recorded
	}
	base, err := subids.System.Reserve(context.Background(), want, r.cfg.IDMapSize)
	if err != nil {
		return fmt.Errorf("lxc: %w", err)
	}
	r.cfg.IDMapBase = base
	if base == recorded {
		return nil
	}
	rec := strconv.FormatUint(uint64(base), 10) + "\n"
	if err := writeFileAtomic(filepath.Join(r.cfg.LXCPath, idmapFile), []byte(rec), 0o644); err != nil {
		return fmt.Errorf("lxc: recording the id range: %w", err)
	}
	return nil
}

func readIDMap(lxcpath string) (uint32, error) {
	b, err := os.ReadFile(filepath.Join(lxcpath, idmapFile))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("lxc: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("lxc: %s: %q is not an id", filepath.Join(lxcpath, idmapFile), b)
	}
	return uint32(n), nil
}

// IDMapBase is the host uid and gid of the containers' root: images and
// files given to containers must be shifted by it.
func (r *Runtime) IDMapBase() uint32 { return r.cfg.IDMapBase }
