// Ensure and the build of one image under its key's lock.

package images

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/upscalehq/upscale/runtimes"
)

// Ensure returns the image for r, building it if no image with the same
// content key exists.
//
// progress gets one line per step, starting at once, and debootstrap's
// own output as it comes, indented by two spaces; calls never overlap.
//
// Concurrent calls for one key, in this process or others, build once:
// the first takes the key's lock file and builds, the others wait for the
// lock (or ctx) and then find the image; if that build failed, the next
// waiter tries again, as failures (a mirror down) are often passing. A
// failed or cancelled build removes its directory; a killed one leaves a
// ".build-" directory, which Lookup ignores and the next build of that key
// removes.
func (b *Builder) Ensure(ctx context.Context, r runtimes.Runtime, progress func(line string)) (Image, error) {
	if progress == nil {
		progress = func(string) {}
	}
	s, err := b.spec(r)
	if err != nil {
		return Image{}, err
	}
	if img, err := b.load(s.key); err == nil {
		return img, nil
	}
	if err := mkdirShared(b.cacheDir()); err != nil {
		return Image{}, fmt.Errorf("images: %w", err)
	}
	unlock, err := b.lock(ctx, s.key, progress)
	if err != nil {
		return Image{}, err
	}
	defer unlock()
	if img, err := b.load(s.key); err == nil {
		progress(fmt.Sprintf("Image %s is ready: another build made it", s.key))
		return img, nil
	}
	return b.build(ctx, s, progress)
}

// lock takes the key's lock file. flock rather than a lock in memory, so
// that two agents on one machine, or an agent and a CLI, share it; and
// flock rather than a file's existence, so that a crashed builder's lock
// goes with its process.
func (b *Builder) lock(ctx context.Context, key string, progress func(string)) (unlock func(), err error) {
	path := filepath.Join(b.cacheDir(), ".lock-"+key)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	fd := int(f.Fd())
	// A blocking flock cannot be cancelled, so poll: a build takes a
	// minute, a tenth of a second more to notice its end is nothing.
	waiting := false
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("images: locking %s: %w", path, err)
		}
		if !waiting {
			waiting = true
			progress(fmt.Sprintf("Waiting for another build of image %s", key))
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("images: waiting for the build of %s: %w", key, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Closing the file releases the lock; the file stays, as removing it
	// would let a third caller lock a new file while a second holds the
	// old one.
	return func() { f.Close() }, nil
}

// build makes the image under a temporary name and renames it into place.
// The caller holds the key's lock.
func (b *Builder) build(ctx context.Context, s spec, progress func(string)) (img Image, err error) {
	start := time.Now()
	cache := b.cacheDir()
	if err := b.removeLeftovers(s.key); err != nil {
		return Image{}, err
	}
	tmp, err := os.MkdirTemp(cache, ".build-"+s.key+"-")
	if err != nil {
		return Image{}, fmt.Errorf("images: %w", err)
	}
	defer func() {
		if err != nil {
			if rerr := removeTree(tmp); rerr != nil {
				err = fmt.Errorf("%w (and cleaning up: %v)", err, rerr)
			}
		}
	}()
	fail := func(err error) (Image, error) {
		return Image{}, fmt.Errorf("images: building the %s image %s: %w", s.runtime, s.key, err)
	}
	if err := os.Mkdir(filepath.Join(tmp, "private"), 0o700); err != nil {
		return fail(err)
	}
	rootfs := filepath.Join(tmp, "private", "rootfs")
	shifted := filepath.Join(tmp, "shifted")

	if d := unreachable(cache, s.shift); d != "" {
		progress(fmt.Sprintf("Warning: %s is closed to uid %d, so unprivileged containers will not reach this image: chmod o+x it", d, s.shift))
	}
	pkgs := "no extra packages"
	if len(s.packages) > 0 {
		pkgs = strings.Join(s.packages, ", ")
	}
	progress(fmt.Sprintf("Building image %s: Debian %s minbase with %s from %s", s.key, s.suite, pkgs, s.mirror))
	// Images of one tree for several id ranges (one per namespace) are
	// often first asked for together, on a fresh host: whoever comes
	// second waits for the first debootstrap and reuses its tree.
	unlockTree, err := b.lock(ctx, s.treeKey(), progress)
	if err != nil {
		return fail(err)
	}
	defer unlockTree()
	var version string
	if twin, ok := b.twin(s); ok {
		// Only the shift differs (another id range on this machine): the
		// built tree is the same, so share its files instead of running
		// debootstrap again. Nothing writes to an image's rootfs.
		progress(fmt.Sprintf("Reusing the Debian tree of image %s (the same packages for ids from %d)", twin.key, twin.shift))
		if out, err := exec.CommandContext(ctx, "cp", "-al", twin.rootfs, rootfs).CombinedOutput(); err != nil {
			return fail(fmt.Errorf("linking %s: %w: %s", twin.rootfs, err, bytes.TrimSpace(out)))
		}
		version = twin.debootstrap
	} else {
		version = b.debootstrapVersion(ctx)
		if err := b.runDebootstrap(ctx, s, rootfs, progress); err != nil {
			return fail(err)
		}
		progress("Making the image container-ready: dropping apt lists and caches, docs, man pages and logs; adding /app")
		if err := prepareRootfs(rootfs); err != nil {
			return fail(err)
		}
	}
	debootstrapTime := time.Since(start)

	progress(fmt.Sprintf("Copying the image with uids and gids shifted by %d for unprivileged containers", s.shift))
	shiftStart := time.Now()
	if err := Shift(rootfs, shifted, s.shift); err != nil {
		return fail(err)
	}
	shiftTime := time.Since(shiftStart)
	size, err := diskUsage(rootfs)
	if err != nil {
		return fail(err)
	}

	m := manifest{
		Format:      formatVersion,
		Key:         s.key,
		Runtime:     s.runtime,
		Packages:    s.packages,
		Suite:       s.suite,
		Mirror:      s.mirror,
		Arch:        s.arch,
		Shift:       s.shift,
		Built:       time.Now().UTC().Truncate(time.Second),
		BuildTime:   time.Since(start).Round(100 * time.Millisecond).Seconds(),
		Debootstrap: version,
		Size:        size,
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fail(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, manifestName), append(data, '\n'), 0o644); err != nil {
		return fail(err)
	}
	// Container root (host uid and gid s.shift) must reach shifted/; other
	// host users have no business in an image, least of all its
	// setuid-root programs in private/rootfs.
	if err := os.Chown(tmp, 0, int(s.shift)); err != nil {
		return fail(err)
	}
	if err := os.Chmod(tmp, 0o750); err != nil {
		return fail(err)
	}
	// The rename is the commit: make what it points to durable first, so
	// that a power cut cannot leave a whole-looking image of empty files.
	if err := syncFS(tmp); err != nil {
		return fail(err)
	}
	final := filepath.Join(cache, s.key)
	if err := os.Rename(tmp, final); err != nil {
		return fail(err)
	}
	_ = syncDir(cache)
	_ = os.Remove(filepath.Join(cache, ".failed-"+s.key+".log"))
	img, err = b.load(s.key)
	if err != nil {
		return Image{}, fmt.Errorf("images: the %s image %s vanished after its build: %w", s.runtime, s.key, err)
	}
	progress(fmt.Sprintf("Image %s built in %s (debootstrap %s, shifted copy %s), %s",
		s.key, time.Since(start).Round(time.Second), debootstrapTime.Round(time.Second), shiftTime.Round(100*time.Millisecond), megabytes(size)))
	return img, nil
}

// mkdirShared makes dir and its missing parents 0755 whatever the umask:
// containers' root, an unprivileged host uid, must pass through them.
func mkdirShared(dir string) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := mkdirShared(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return os.Chmod(dir, 0o755)
}

// unreachable returns the first directory from dir up that uid and gid id
// cannot pass through, or "".
func unreachable(dir string, id uint32) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return dir
	}
	for d := abs; ; d = filepath.Dir(d) {
		var st unix.Stat_t
		if err := unix.Stat(d, &st); err != nil {
			return d
		}
		ok := st.Mode&0o001 != 0 || (st.Uid == id && st.Mode&0o100 != 0) || (st.Gid == id && st.Mode&0o010 != 0)
		if !ok {
			return d
		}
		if d == "/" {
			return ""
		}
	}
}

// removeLeftovers removes what killed builds of key left behind, and moves
// aside a directory at the key's name that is not a whole image (it would
// make the final rename fail). The caller holds the key's lock, so no
// build of key is running.
func (b *Builder) removeLeftovers(key string) error {
	cache := b.cacheDir()
	entries, err := os.ReadDir(cache)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".build-"+key+"-") {
			if err := removeTree(filepath.Join(cache, e.Name())); err != nil {
				return fmt.Errorf("images: removing an interrupted build: %w", err)
			}
		}
	}
	// Moved aside rather than removed: whatever made it look incomplete,
	// containers may have it as their lower dir.
	final := filepath.Join(cache, key)
	if _, err := os.Lstat(final); err == nil {
		aside := filepath.Join(cache, fmt.Sprintf(".broken-%s-%d", key, time.Now().Unix()))
		if err := os.Rename(final, aside); err != nil {
			return fmt.Errorf("images: moving an incomplete image aside: %w", err)
		}
	}
	return nil
}
