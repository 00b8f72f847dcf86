package images

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Shift copies the tree at src to dst, which must not exist yet, adding
// offset to every uid and gid, so that the copy can be the lower dir of an
// unprivileged container whose idmap starts at offset.
//
// It copies rather than shifting in place because the image keeps both
// trees (the unshifted one is what was built, and builds may use it), and
// because a copy into a fresh directory can be thrown away and redone when
// interrupted, where a half-shifted tree could not be told apart from a
// whole one.
//
// What is kept: content (copy_file_range, so reflinks where the file system
// has them), modes including setuid, setgid and sticky (set again after
// chown, which clears them), hard links (as hard links within dst),
// symlinks, device nodes, fifos and sockets, access and modification times
// (directories' too, set once their entries exist) and extended attributes.
// Attributes that hold ids are rewritten rather than copied:
//
//   - security.capability is written as a v3 (namespaced) capability whose
//     root id is its old root id plus offset: a host v2 capability would
//     grant its capabilities to whoever runs the file on the host, while
//     the v3 one only counts in a user namespace whose root is host uid
//     offset, which is the container's.
//   - POSIX ACLs get their named user and group entries shifted.
//
// Other attributes the destination refuses (user.* on special files, or a
// security module's labels) are left out: that is "where the kernel
// allows". Mount points below src are copied as empty directories, as
// "cp -ax" does, so that a /proc left mounted in a rootfs is not copied.
func Shift(src, dst string, offset uint32) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return fmt.Errorf("images: shift: %w", &os.PathError{Op: "lstat", Path: src, Err: err})
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("images: shift: %s is not a directory", src)
	}
	s := &shifter{offset: offset, dev: st.Dev, links: map[fileID]string{}, jobs: make(chan copyJob, 256)}
	// Copying is mostly waiting on the disk and on system calls, so a few
	// more workers than CPUs keep the queue moving.
	workers := max(4, 2*runtime.NumCPU())
	var wg sync.WaitGroup
	for range workers {
		wg.Go(s.worker)
	}
	err := s.walk(src, dst, &st)
	close(s.jobs)
	wg.Wait()
	if err == nil {
		err = s.firstErr()
	}
	if err == nil {
		err = s.finish()
	}
	if err != nil {
		return fmt.Errorf("images: shift %s to %s: %w", src, dst, err)
	}
	return nil
}

type fileID struct{ dev, ino uint64 }

type copyJob struct {
	src, dst string
	st       unix.Stat_t
}

type pendingLink struct{ oldname, newname string }

type pendingDir struct {
	src, dst string
	st       unix.Stat_t
}

type shifter struct {
	offset uint32
	dev    uint64
	jobs   chan copyJob

	// Only the walking goroutine touches these.
	links        map[fileID]string // first copy of each multiply linked inode
	pendingLinks []pendingLink
	dirs         []pendingDir

	mu  sync.Mutex
	err error
}

func (s *shifter) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

func (s *shifter) firstErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *shifter) worker() {
	for j := range s.jobs {
		if s.firstErr() != nil {
			continue // drain: the walk stops soon
		}
		if err := s.copyFile(j.src, j.dst, &j.st); err != nil {
			s.fail(err)
		}
	}
}

// walk creates dst for the directory src and everything below it. Regular
// files go to the workers; the directory's own metadata waits for finish,
// as creating its entries would change its mtime again.
func (s *shifter) walk(src, dst string, st *unix.Stat_t) error {
	if err := s.firstErr(); err != nil {
		return err
	}
	if err := unix.Mkdir(dst, 0o700); err != nil {
		return &os.PathError{Op: "mkdir", Path: dst, Err: err}
	}
	s.dirs = append(s.dirs, pendingDir{src, dst, *st})
	if st.Dev != s.dev {
		return nil
	}
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	entries, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, e := range entries {
		sp, dp := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		var est unix.Stat_t
		if err := unix.Lstat(sp, &est); err != nil {
			return &os.PathError{Op: "lstat", Path: sp, Err: err}
		}
		if est.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := s.walk(sp, dp, &est); err != nil {
				return err
			}
			continue
		}
		if est.Nlink > 1 {
			id := fileID{est.Dev, est.Ino}
			if first, ok := s.links[id]; ok {
				s.pendingLinks = append(s.pendingLinks, pendingLink{first, dp})
				continue
			}
			s.links[id] = dp
		}
		if est.Mode&unix.S_IFMT == unix.S_IFREG {
			s.jobs <- copyJob{sp, dp, est}
			continue
		}
		if err := s.copySpecial(sp, dp, &est); err != nil {
			return err
		}
	}
	return nil
}

// finish runs once every file exists: hard links to files the workers
// have completed, then directory metadata, deepest first.
func (s *shifter) finish() error {
	for _, l := range s.pendingLinks {
		if err := os.Link(l.oldname, l.newname); err != nil {
			return err
		}
	}
	for i := len(s.dirs) - 1; i >= 0; i-- {
		d := s.dirs[i]
		if err := s.setMeta(d.src, d.dst, &d.st, -1); err != nil {
			return err
		}
	}
	return nil
}

func (s *shifter) copyFile(src, dst string, st *unix.Stat_t) error {
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if st.Size > 0 {
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return fmt.Errorf("copy %s: %w", src, err)
		}
	}
	// Ownership, mode and capabilities after the content, as a write
	// would clear setuid and capabilities again.
	if err := s.setMeta(src, dst, st, int(out.Fd())); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func (s *shifter) copySpecial(src, dst string, st *unix.Stat_t) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO, unix.S_IFSOCK:
		// The real mode comes with setMeta; 0600 keeps the node private
		// until then.
		if err := unix.Mknod(dst, st.Mode&unix.S_IFMT|0o600, int(st.Rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: dst, Err: err}
		}
	default:
		return fmt.Errorf("%s: unknown file type %#o", src, st.Mode&unix.S_IFMT)
	}
	return s.setMeta(src, dst, st, -1)
}

// setMeta gives dst the shifted owner, the mode, the extended attributes
// and the times of src. fd is dst's open descriptor, or -1.
func (s *shifter) setMeta(src, dst string, st *unix.Stat_t, fd int) error {
	uid, err := s.shiftID(st.Uid, src)
	if err != nil {
		return err
	}
	gid, err := s.shiftID(st.Gid, src)
	if err != nil {
		return err
	}
	isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	if fd >= 0 {
		err = unix.Fchown(fd, int(uid), int(gid))
	} else {
		err = unix.Lchown(dst, int(uid), int(gid))
	}
	if err != nil {
		return &os.PathError{Op: "chown", Path: dst, Err: err}
	}
	if !isLink {
		if fd >= 0 {
			err = unix.Fchmod(fd, st.Mode&0o7777)
		} else {
			err = unix.Fchmodat(unix.AT_FDCWD, dst, st.Mode&0o7777, 0)
		}
		if err != nil {
			return &os.PathError{Op: "chmod", Path: dst, Err: err}
		}
	}
	if err := s.copyXattrs(src, dst); err != nil {
		return err
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: dst, Err: err}
	}
	return nil
}

func (s *shifter) shiftID(id uint32, path string) (uint32, error) {
	// (uid_t)-1 means "unchanged" to chown, so it is no valid result.
	if uint64(id)+uint64(s.offset) >= 1<<32-1 {
		return 0, fmt.Errorf("%s: id %d plus %d is out of range", path, id, s.offset)
	}
	return id + s.offset, nil
}

const (
	xattrCapability = "security.capability"
	xattrACLAccess  = "system.posix_acl_access"
	xattrACLDefault = "system.posix_acl_default"
)

func (s *shifter) copyXattrs(src, dst string) error {
	names, err := listXattrs(src)
	if err != nil {
		return err
	}
	for _, name := range names {
		val, err := getXattr(src, name)
		if errors.Is(err, unix.ENODATA) {
			continue // removed since listed
		}
		if err != nil {
			return err
		}
		required := false
		switch name {
		case xattrCapability:
			required = true
			if val, err = shiftCapability(val, s.offset); err != nil {
				return fmt.Errorf("%s: %w", src, err)
			}
		case xattrACLAccess, xattrACLDefault:
			if val, err = shiftACL(val, s.offset); err != nil {
				return fmt.Errorf("%s: %s: %w", src, name, err)
			}
		}
		err = unix.Lsetxattr(dst, name, val, 0)
		if err != nil && !required && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EACCES)) {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "setxattr " + name, Path: dst, Err: err}
		}
	}
	return nil
}

func listXattrs(path string) ([]string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Llistxattr(path, buf)
		switch {
		case errors.Is(err, unix.ERANGE):
			size, err := unix.Llistxattr(path, nil)
			if err != nil {
				return nil, &os.PathError{Op: "listxattr", Path: path, Err: err}
			}
			buf = make([]byte, size+64)
			continue
		case errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP):
			return nil, nil
		case err != nil:
			return nil, &os.PathError{Op: "listxattr", Path: path, Err: err}
		}
		var names []string
		for b := buf[:n]; len(b) > 0; {
			i := 0
			for i < len(b) && b[i] != 0 {
				i++
			}
			if i > 0 {
				names = append(names, string(b[:i]))
			}
			if i == len(b) {
				break
			}
			b = b[i+1:]
		}
		return names, nil
	}
}

func getXattr(path, name string) ([]byte, error) {
	buf := make([]byte, 128)
	for {
		n, err := unix.Lgetxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			size, err := unix.Lgetxattr(path, name, nil)
			if err != nil {
				return nil, &os.PathError{Op: "getxattr " + name, Path: path, Err: err}
			}
			buf = make([]byte, size+64)
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "getxattr " + name, Path: path, Err: err}
		}
		return buf[:n], nil
	}
}

// The layout of security.capability, from linux/capability.h.
const (
	capRevisionMask = 0xff000000
	capRevision1    = 0x01000000 // one 32-bit set: 12 bytes
	capRevision2    = 0x02000000 // two 32-bit sets: 20 bytes
	capRevision3    = 0x03000000 // v2 plus the root uid it belongs to: 24 bytes
	capFlagsMask    = 0x000001   // VFS_CAP_FLAGS_EFFECTIVE
)

// shiftCapability rewrites a file capability as a v3 one whose root id is
// moved by offset. v1 and v2 capabilities belong to the root of the
// initial user namespace, so their root id is 0.
func shiftCapability(val []byte, offset uint32) ([]byte, error) {
	if len(val) < 4 {
		return nil, fmt.Errorf("%s of %d bytes is too short", xattrCapability, len(val))
	}
	le := binary.LittleEndian
	magic := le.Uint32(val)
	out := make([]byte, 24)
	var rootid uint32
	switch rev := magic & capRevisionMask; {
	case rev == capRevision1 && len(val) == 12:
		copy(out[4:12], val[4:12])
	case rev == capRevision2 && len(val) == 20:
		copy(out[4:20], val[4:20])
	case rev == capRevision3 && len(val) == 24:
		copy(out[4:20], val[4:20])
		rootid = le.Uint32(val[20:])
	default:
		return nil, fmt.Errorf("%s: unknown revision %#x or size %d", xattrCapability, rev, len(val))
	}
	if uint64(rootid)+uint64(offset) >= 1<<32-1 {
		return nil, fmt.Errorf("%s: root id %d plus %d is out of range", xattrCapability, rootid, offset)
	}
	le.PutUint32(out, capRevision3|magic&capFlagsMask)
	le.PutUint32(out[20:], rootid+offset)
	return out, nil
}

// POSIX ACL attributes, from linux/posix_acl_xattr.h: a version, then
// entries of tag, permissions and id.
const (
	aclVersion = 2
	aclUser    = 0x02
	aclGroup   = 0x08
)

func shiftACL(val []byte, offset uint32) ([]byte, error) {
	le := binary.LittleEndian
	if len(val) < 4 || (len(val)-4)%8 != 0 || le.Uint32(val) != aclVersion {
		return nil, fmt.Errorf("unknown ACL format (%d bytes)", len(val))
	}
	out := append([]byte(nil), val...)
	for i := 4; i < len(out); i += 8 {
		tag := le.Uint16(out[i:])
		if tag != aclUser && tag != aclGroup {
			continue
		}
		id := le.Uint32(out[i+4:])
		if uint64(id)+uint64(offset) >= 1<<32-1 {
			return nil, fmt.Errorf("ACL id %d plus %d is out of range", id, offset)
		}
		le.PutUint32(out[i+4:], id+offset)
	}
	return out, nil
}
