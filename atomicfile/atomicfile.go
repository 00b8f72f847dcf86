// Package atomicfile writes files that a crash leaves whole or absent,
// never torn: secrets, keys and records read at start-up.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with data: a synced temporary file in the same
// directory, renamed over it.
func Write(path string, data []byte, perm os.FileMode) error {
	return place(path, data, perm, os.Rename)
}

// Create makes path hold data, or fails with an error matching
// os.ErrExist when path exists: a synced temporary file, linked to path.
// A link, not a rename: two processes creating one file at once end with
// the first one's, never one replaced under a reader.
func Create(path string, data []byte, perm os.FileMode) error {
	return place(path, data, perm, os.Link)
}

func place(path string, data []byte, perm os.FileMode, move func(tmp, path string) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // gone already after a rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := move(f.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // best effort: the new name, durable too (ext4, xfs)
		d.Close()
	}
	return nil
}
