package gluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/upscalehq/upscale/mountinfo"
	"github.com/upscalehq/upscale/msgtext"
)

// Mount mounts volume with the FUSE client at dir (made if missing),
// fetching its layout from the first server that answers, and gives the
// volume's root to uid:gid (a namespace's container root, as the host
// sees it) with mode 0770, so that the containers of that range write to
// it and no other uid but root enters it. A volume mounted at dir already
// is only given to uid:gid again.
func Mount(ctx context.Context, servers []string, volume, dir string, uid, gid int) error {
	if len(servers) == 0 {
		return fmt.Errorf("mount %s: no storage host to fetch it from", volume)
	}
	for _, s := range servers {
		if err := checkHost(s); err != nil {
			return err
		}
	}
	if strings.Trim(volume, "abcdefghijklmnopqrstuvwxyz0123456789_-") != "" || volume == "" {
		return fmt.Errorf("mount: invalid volume name %q", volume)
	}
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || strings.ContainsAny(dir, ",\n\x00 ") {
		return fmt.Errorf("mount %s: mount point %q: want a clean absolute path", volume, dir)
	}
	mounted, err := Mounted(dir)
	if err != nil {
		return err
	}
	if !mounted {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("mount %s: %w", volume, err)
		}
		args := []string{"-t", "glusterfs"}
		if len(servers) > 1 {
			// The layout comes from one server only; these answer when it
			// is down (the data is read and written on every brick anyway).
			args = append(args, "-o", "backup-volfile-servers="+strings.Join(servers[1:], ":"))
		}
		args = append(args, servers[0]+":/"+volume, dir)
		out, err := exec.CommandContext(ctx, "mount", args...).CombinedOutput()
		if err != nil {
			why := msgtext.Truncate(msgtext.OneLine(string(out)), 200)
			if why == "" {
				why = err.Error()
			}
			return fmt.Errorf("mount volume %s from %s: %s", volume, servers[0], why)
		}
		// mount.glusterfs reports success when the client started, before
		// it knows whether the volume exists; an empty FUSE mount answers
		// ENOTCONN.
		if _, err := os.Stat(dir); err != nil {
			Unmount(dir)
			return fmt.Errorf("mount volume %s from %s: the volume does not answer (%v)", volume, servers[0], errors.Unwrap(err))
		}
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("mount %s: give it to %d:%d: %w", volume, uid, gid, err)
	}
	if err := os.Chmod(dir, 0o770); err != nil {
		return fmt.Errorf("mount %s: %w", volume, err)
	}
	return nil
}

// Unmount unmounts dir and removes the empty mount point; a dir that is
// not mounted is only removed. A busy mount is detached lazily: the
// containers that still use it keep it until they stop.
func Unmount(dir string) error {
	mounted, err := Mounted(dir)
	if err != nil {
		return err
	}
	if mounted {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			return fmt.Errorf("unmount %s: %s", dir, msgtext.OneLine(string(out)))
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}

// Mounted says whether something is mounted at dir, from this mount
// namespace's table (a stat of a dead FUSE mount would hang or fail).
func Mounted(dir string) (bool, error) {
	points, err := mountinfo.Points()
	if err != nil {
		return false, fmt.Errorf("read mount table: %w", err)
	}
	return slices.Contains(points, dir), nil
}
