package hostagent

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/upscalehq/upscale/appspec"
)

// PackLimits bound what Pack writes; 0 is no bound.
type PackLimits struct {
	Bytes   int64 // of the gzipped tar
	Entries int   // files, directories and links
}

// LimitError is a result over a PackLimits bound; its text is the line a
// user sees.
type LimitError struct{ msg string }

func (e *LimitError) Error() string { return e.msg }

// Pack writes the tree at dir as a gzipped tar, with owners as the
// container sees them (host uid minus idBase): a release is portable
// between hosts whatever their id mapping. It stops with a *LimitError as
// soon as the tree is over lim, without reading the rest.
func Pack(dir string, idBase uint32, w io.Writer, lim PackLimits) error {
	lw := &limitWriter{w: w, left: lim.Bytes}
	if lim.Bytes <= 0 {
		lw.left = math.MaxInt64
	}
	zw := gzip.NewWriter(lw)
	tw := tar.NewWriter(zw)
	entries := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		if entries++; lim.Entries > 0 && entries > lim.Entries {
			return &LimitError{fmt.Sprintf("the build left more than %d files and directories in /app, the limit; remove what the app does not need to run", lim.Entries)}
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		case !info.Mode().IsRegular() && !info.IsDir():
			return nil // sockets, fifos, devices have no place in a release
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid = containerID(hdr.Uid, idBase), containerID(hdr.Gid, idBase)
		hdr.Uname, hdr.Gname = "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err == nil {
		if err = tw.Close(); err == nil {
			err = zw.Close()
		}
	}
	if lw.over {
		return &LimitError{fmt.Sprintf("the build's result is over the limit of %s (packed); remove what the app does not need to run", appspec.FormatSize(lim.Bytes))}
	}
	var le *LimitError
	if errors.As(err, &le) {
		return le
	}
	if err != nil {
		return fmt.Errorf("packing %s: %w", dir, err)
	}
	return nil
}

// limitWriter fails every write once left bytes are written.
type limitWriter struct {
	w    io.Writer
	left int64
	over bool
}

var errOverLimit = errors.New("over the size limit")

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		l.over = true
		return 0, errOverLimit
	}
	l.left -= int64(len(p))
	return l.w.Write(p)
}

// containerID maps a host id into the container's range; ids outside it
// (files the host made) become the container's root.
func containerID(id int, base uint32) int {
	if id >= int(base) && id < int(base)+65536 {
		return id - int(base)
	}
	return 0
}

// maxUnpacked bounds what one artifact may expand to on disk.
const maxUnpacked = 8 << 30

// Unpack extracts a tar (gzipped or not) into dir, which it creates, with
// owners shifted by idBase. Every path is resolved inside dir (os.Root), so
// neither "../" names nor symlinks in the archive can write outside it.
func Unpack(r io.Reader, dir string, idBase uint32) error {
	br := bufio.NewReader(r)
	var in io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return err
		}
		defer zr.Close()
		in = zr
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Lchown(dir, int(idBase), int(idBase)); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(in)
	var total int64
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading archive: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		if name == "." || name == "pax_global_header" {
			continue
		}
		if !fs.ValidPath(name) {
			return fmt.Errorf("archive entry %q leaves its directory", hdr.Name)
		}
		uid, gid := int(idBase)+clampID(hdr.Uid), int(idBase)+clampID(hdr.Gid)
		mode := hdr.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, mode.Perm()); err != nil {
				return err
			}
		case tar.TypeReg:
			total += hdr.Size
			if total > maxUnpacked {
				return fmt.Errorf("archive expands to more than %d GiB", maxUnpacked>>30)
			}
			f, err := root.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode.Perm())
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return err
			}
		default:
			continue // hard links, devices, fifos: not in a release
		}
		if err := root.Lchown(name, uid, gid); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeSymlink && mode&^fs.ModePerm != 0 {
			// chown cleared setuid/setgid: put them back.
			if err := root.Chmod(name, mode); err != nil {
				return err
			}
		}
	}
}

func clampID(id int) int {
	if id < 0 || id >= 65536 {
		return 0
	}
	return id
}

func shortID() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}
