package images

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
)

// The files every container writes for itself when it is created. The
// image holds neutral versions: debootstrap copies the build host's
// resolv.conf and hostname (with the host's modes), which would be wrong
// in a container and tell it about the host.
var neutralFiles = []struct {
	name, content string
}{
	{"etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"},
	{"etc/resolv.conf", "# Written by Upscale when a container is created.\n"},
	{"etc/hostname", "localhost\n"},
}

// dpkgExcludes keeps what later dpkg runs in a container (a build step
// installing a package) as lean as the image itself.
const dpkgExcludes = `# Upscale images carry no documentation but licences.
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
`

// prepareRootfs makes a fresh debootstrap tree small and container-ready.
// Every path goes through os.Root: a package could ship a symlink for one
// of these directories, and following it must not reach the host's files.
//
// Removed: apt's package lists and caches (the largest part, and stale by
// the time anyone would use them: apt-get update fetches new ones), the
// downloaded .debs, /usr/share/doc but for copyright files, man and info
// pages, logs of the build and debconf's backup files. Kept: everything
// packages need to run, /etc/ssl and the CA certificates, dpkg's database.
func prepareRootfs(dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()

	steps := []struct {
		dir  string
		keep func(name string, isDir bool) bool
	}{
		{"var/lib/apt/lists", keepNames("partial")},
		{"var/lib/apt/lists/partial", keepNames()},
		{"var/cache/apt", keepNames("archives")},
		{"var/cache/apt/archives", keepNames("partial")},
		{"var/cache/apt/archives/partial", keepNames()},
		{"usr/share/man", keepNames()},
		{"usr/share/info", keepNames()},
		{"var/cache/debconf", func(name string, _ bool) bool { return path.Ext(name) != ".dat-old" }},
	}
	for _, s := range steps {
		if err := removeEntries(root, s.dir, s.keep); err != nil {
			return err
		}
	}
	if err := trimDocs(root); err != nil {
		return err
	}
	if err := removeFiles(root, "var/log"); err != nil {
		return err
	}

	for _, f := range neutralFiles {
		if err := writeRootFile(root, f.name, f.content); err != nil {
			return err
		}
	}
	if err := root.MkdirAll("etc/dpkg/dpkg.cfg.d", 0o755); err != nil {
		return fmt.Errorf("prepare image: %w", err)
	}
	if err := writeRootFile(root, "etc/dpkg/dpkg.cfg.d/upscale-excludes", dpkgExcludes); err != nil {
		return err
	}

	// The app's files go to /app: an empty directory of the image's root.
	if err := root.Mkdir("app", 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("prepare image: %w", err)
	}
	if fi, err := root.Lstat("app"); err != nil || !fi.IsDir() {
		return fmt.Errorf("prepare image: /app is not a directory")
	}
	if err := root.Lchown("app", 0, 0); err != nil {
		return fmt.Errorf("prepare image: %w", err)
	}
	if err := root.Chmod("app", 0o755); err != nil {
		return fmt.Errorf("prepare image: %w", err)
	}
	return nil
}

func keepNames(names ...string) func(string, bool) bool {
	return func(name string, _ bool) bool {
		for _, n := range names {
			if n == name {
				return true
			}
		}
		return false
	}
}

// removeEntries removes the entries of dir for which keep is false. A
// missing dir is fine: not every package set has every directory.
func removeEntries(root *os.Root, dir string, keep func(name string, isDir bool) bool) error {
	entries, err := readRootDir(root, dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if keep(e.Name(), e.IsDir()) {
			continue
		}
		if err := root.RemoveAll(path.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("prepare image: %w", err)
		}
	}
	return nil
}

// trimDocs keeps /usr/share/doc/PACKAGE/copyright (and the symlinks some
// packages have for their doc directory): licences are small and are the
// one part of the docs that must travel with the programs.
func trimDocs(root *os.Root) error {
	pkgs, err := readRootDir(root, "usr/share/doc")
	if err != nil {
		return err
	}
	for _, p := range pkgs {
		if !p.IsDir() {
			continue
		}
		if err := removeEntries(root, path.Join("usr/share/doc", p.Name()), keepNames("copyright")); err != nil {
			return err
		}
	}
	return nil
}

// removeFiles removes the files below dir and keeps the directories,
// which some daemons expect to find (/var/log/apt).
func removeFiles(root *os.Root, dir string) error {
	entries, err := readRootDir(root, dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := path.Join(dir, e.Name())
		if e.IsDir() {
			if err := removeFiles(root, p); err != nil {
				return err
			}
			continue
		}
		if err := root.Remove(p); err != nil {
			return fmt.Errorf("prepare image: %w", err)
		}
	}
	return nil
}

func readRootDir(root *os.Root, dir string) ([]fs.DirEntry, error) {
	fi, err := root.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("prepare image: %w", err)
	}
	if !fi.IsDir() {
		return nil, nil // a symlink or file where a directory was expected: leave it
	}
	f, err := root.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("prepare image: %w", err)
	}
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("prepare image: %w", err)
	}
	return entries, nil
}

// writeRootFile replaces name with a regular file of root's, mode 0644,
// whatever was there (a symlink, as resolv.conf often is).
func writeRootFile(root *os.Root, name, content string) error {
	if err := root.RemoveAll(name); err != nil {
		return fmt.Errorf("prepare image: %w", err)
	}
	if err := root.WriteFile(name, []byte(content), 0o644); err != nil {
		return fmt.Errorf("prepare image: %w", err)
	}
	if err := root.Lchown(name, 0, 0); err != nil {
		return fmt.Errorf("prepare image: %w", err)
	}
	if err := root.Chmod(name, 0o644); err != nil {
		return fmt.Errorf("prepare image: %w", err)
	}
	return nil
}
