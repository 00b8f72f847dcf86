// Copying an app directory into a container's writable layer.

package lxc

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// copyTree copies src into dst (which exists) without following symlinks,
// giving every entry to the container's root.
func copyTree(ctx context.Context, src, dst string, id int) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil || rel == "." {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode().Perm()
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, mode); err != nil {
				return err
			}
			if err := os.Chmod(target, mode); err != nil {
				return err
			}
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		case d.Type().IsRegular():
			if err := copyFile(path, target, mode); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unsupported file type %v", path, d.Type())
		}
		return os.Lchown(target, id, id)
	})
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	// *os.File to *os.File: copy_file_range, reflinks where the fs can.
	_, err = out.ReadFrom(in)
	if err == nil {
		err = out.Chmod(mode)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
