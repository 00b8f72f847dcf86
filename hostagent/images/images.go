// Package images builds and caches the runtime images that containers run
// on: a Debian minbase rootfs with a runtime's packages, plus a copy of it
// with every uid and gid shifted for unprivileged containers. An image is
// built once per content key and shared by every container and every agent
// on the machine.
//
// Layout of the cache directory:
//
//	KEY/                   0750 root:SHIFT, so container root (host uid
//	                       SHIFT) can reach the lower dir and host users
//	                       cannot run the image's setuid programs
//	KEY/manifest.json      what was built, when, from what
//	KEY/shifted/           the lower dir of containers: ids + SHIFT
//	KEY/private/rootfs/    the unshifted rootfs; private/ is 0700
//	.lock-KEY              flock(2) held while KEY is being built
//	.lock-tree-RUNTIME-*   held while a build makes or shares the Debian
//	                       tree that images for every shift have in common
//	.build-KEY-*/          a build in progress; renamed to KEY when done
//	.failed-KEY.log        debootstrap.log of the last failed build
//	.broken-KEY-TIME/      a KEY/ found incomplete, kept for the operator
package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/runtimes"
)

// formatVersion is part of every key: bump it when what a build produces
// changes (debootstrap options, trimming, layout), so old images are not
// mistaken for new ones.
const formatVersion = 1

// Defaults of Builder's zero fields.
const (
	DefaultCacheDir = "/var/cache/upscale/images"
	DefaultShift    = 100000
)

const manifestName = "manifest.json"

// packagePattern is Debian policy 5.6.1, as in package runtimes: a name
// that passes cannot carry a comma into debootstrap's --include.
var packagePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)

// Builder builds runtime images into a cache directory. The zero value
// uses the defaults; a Builder has no state of its own, so one value may
// be used from many goroutines.
type Builder struct {
	CacheDir    string // default /var/cache/upscale/images
	Mirror      string // Debian mirror URL; "" = the one in this machine's apt sources (see DetectMirror)
	Suite       string // default "bookworm"
	Shift       uint32 // uid/gid offset for the shifted copy, default 100000
	Debootstrap string // binary, default "debootstrap"
}

// Image is a built runtime image.
type Image struct {
	Key     string // content key: runtime name + short hash
	Runtime string // the runtime's name
	Rootfs  string // the unshifted rootfs (kept: builds could use it; also proof of what was built)
	Shifted string // rootfs with every uid/gid + Shift, the lower dir for containers
	Built   time.Time
	Size    int64 // bytes on disk of one of the two trees
}

// manifest is KEY/manifest.json. Its presence in KEY is what makes KEY an
// image: it is written before the build directory is renamed into place.
type manifest struct {
	Format      int       `json:"format"`
	Key         string    `json:"key"`
	Runtime     string    `json:"runtime"`
	Packages    []string  `json:"packages"`
	Suite       string    `json:"suite"`
	Mirror      string    `json:"mirror"`
	Arch        string    `json:"arch"`
	Shift       uint32    `json:"shift"`
	Built       time.Time `json:"built"`
	BuildTime   float64   `json:"build_seconds"`
	Debootstrap string    `json:"debootstrap_version"`
	Size        int64     `json:"size_bytes"`
}

func (b *Builder) cacheDir() string {
	if b.CacheDir == "" {
		return DefaultCacheDir
	}
	return b.CacheDir
}

func (b *Builder) suite() string {
	if b.Suite == "" {
		return defaultSuite
	}
	return b.Suite
}

func (b *Builder) shift() uint32 {
	if b.Shift == 0 {
		return DefaultShift
	}
	return b.Shift
}

func (b *Builder) debootstrap() string {
	if b.Debootstrap == "" {
		return "debootstrap"
	}
	return b.Debootstrap
}

// spec is everything an image is built from; key is its hash.
type spec struct {
	runtime  string
	packages []string // sorted, without duplicates
	suite    string
	mirror   string
	arch     string
	shift    uint32
	key      string
}

func (b *Builder) spec(r runtimes.Runtime) (spec, error) {
	if err := names.Check("runtime", r.Name); err != nil {
		return spec{}, fmt.Errorf("images: %w", err)
	}
	pkgs := slices.Clone(r.Packages)
	slices.Sort(pkgs)
	pkgs = slices.Compact(pkgs)
	for _, p := range pkgs {
		if !packagePattern.MatchString(p) {
			return spec{}, fmt.Errorf("images: runtime %s: invalid Debian package name %s", r.Name, names.Quote(p))
		}
	}
	suite := b.suite()
	if !packagePattern.MatchString(suite) {
		return spec{}, fmt.Errorf("images: invalid suite %s", names.Quote(suite))
	}
	var mirror string
	var err error
	if b.Mirror == "" {
		mirror, err = detectMirror(os.DirFS("/"), suite)
	} else {
		mirror, err = normalizeMirror(b.Mirror)
	}
	if err != nil {
		return spec{}, fmt.Errorf("images: runtime %s: %w", r.Name, err)
	}
	s := spec{runtime: r.Name, packages: pkgs, suite: suite, mirror: mirror, arch: runtime.GOARCH, shift: b.shift()}
	s.key = s.computeKey()
	return s, nil
}

// computeKey hashes what decides the bytes of an image. The runtime's name
// is not hashed but leads the key, so two runtimes never share an image
// directory (and people can read which image is which).
func (s spec) computeKey() string {
	h := sha256.New()
	fmt.Fprintf(h, "format %d\nsuite %s\nmirror %s\narch %s\nshift %d\n", formatVersion, s.suite, s.mirror, s.arch, s.shift)
	for _, p := range s.packages {
		fmt.Fprintf(h, "package %s\n", p)
	}
	return s.runtime + "-" + hex.EncodeToString(h.Sum(nil))[:12]
}

// treeKey names what images of every shift share: the Debian tree.
func (s spec) treeKey() string {
	t := s
	t.shift = 0
	return "tree-" + t.computeKey()
}

// Lookup returns the cached image for r without building, ok=false if
// absent.
func (b *Builder) Lookup(r runtimes.Runtime) (Image, bool) {
	s, err := b.spec(r)
	if err != nil {
		return Image{}, false
	}
	img, err := b.load(s.key)
	return img, err == nil
}

// List returns the cached images, sorted by key.
func (b *Builder) List() ([]Image, error) {
	entries, err := os.ReadDir(b.cacheDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	var imgs []Image
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		// A directory that is not a whole image is no image: skip it
		// rather than fail the listing of the good ones.
		if img, err := b.load(e.Name()); err == nil {
			imgs = append(imgs, img)
		}
	}
	return imgs, nil
}

// load reads the image in directory key, checking that it is whole.
func (b *Builder) load(key string) (Image, error) {
	dir := filepath.Join(b.cacheDir(), key)
	data, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return Image{}, err
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return Image{}, fmt.Errorf("%s: %w", dir, err)
	}
	if m.Key != key || m.Format != formatVersion {
		return Image{}, fmt.Errorf("%s: manifest is for %q, format %d", dir, m.Key, m.Format)
	}
	img := Image{
		Key:     key,
		Runtime: m.Runtime,
		Rootfs:  filepath.Join(dir, "private", "rootfs"),
		Shifted: filepath.Join(dir, "shifted"),
		Built:   m.Built,
		Size:    m.Size,
	}
	for _, d := range []string{img.Rootfs, img.Shifted} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return Image{}, fmt.Errorf("%s: %s is missing", dir, d)
		}
	}
	return img, nil
}

// twinImage is a cached image built from the same spec but for another
// shift.
type twinImage struct {
	key, rootfs, debootstrap string
	shift                    uint32
}

func (b *Builder) twin(s spec) (twinImage, bool) {
	entries, _ := os.ReadDir(b.cacheDir())
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), s.runtime+"-") || e.Name() == s.key {
			continue
		}
		data, err := os.ReadFile(filepath.Join(b.cacheDir(), e.Name(), manifestName))
		if err != nil {
			continue
		}
		var m manifest
		if json.Unmarshal(data, &m) != nil || m.Format != formatVersion || m.Runtime != s.runtime || m.Suite != s.suite ||
			m.Mirror != s.mirror || m.Arch != s.arch || !slices.Equal(m.Packages, s.packages) {
			continue
		}
		img, err := b.load(e.Name())
		if err != nil {
			continue
		}
		return twinImage{key: img.Key, rootfs: img.Rootfs, debootstrap: m.Debootstrap, shift: m.Shift}, true
	}
	return twinImage{}, false
}

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

// debootstrapEnv is a fixed environment: debootstrap chroots into the
// target and runs maintainer scripts there, which must not see the agent's
// variables, a locale the target lacks, or a PATH without /usr/sbin.
func debootstrapEnv() []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"LC_ALL=C",
		"DEBIAN_FRONTEND=noninteractive",
		"DEBCONF_NONINTERACTIVE_SEEN=true",
	}
	for _, v := range []string{"http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"} {
		if val, ok := os.LookupEnv(v); ok {
			env = append(env, v+"="+val)
		}
	}
	return env
}

func (b *Builder) debootstrapVersion(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.debootstrap(), "--version")
	cmd.Env = debootstrapEnv()
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "debootstrap ")
}

func (b *Builder) runDebootstrap(ctx context.Context, s spec, target string, progress func(string)) error {
	args := []string{
		"--variant=minbase",
		"--components=main",
		// An image is built from the network and run for every app:
		// refuse an archive whose signature cannot be checked rather than
		// fall back to trusting it, which is debootstrap's default
		// without a keyring.
		"--force-check-gpg",
	}
	if len(s.packages) > 0 {
		args = append(args, "--include="+strings.Join(s.packages, ","))
	}
	args = append(args, s.suite, target, s.mirror)
	// Through sh for the umask: the agent's may be 077, and the files
	// debootstrap writes itself (sources.list) must be readable by every
	// user of the container, not only its root.
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", `umask 022 && exec "$0" "$@"`, b.debootstrap()}, args...)...)
	cmd.Env = debootstrapEnv()
	cmd.Dir = "/"
	out := &lineWriter{emit: func(l string) { progress("  " + l) }, keep: 12}
	// One writer for both streams: exec then calls it from one goroutine
	// at a time, and Wait returns only once it has seen all the output.
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		// debootstrap mounts /proc and /sys (and, in some containers,
		// binds /dev) inside the target. In a mount namespace of its own
		// those mounts end with it, however it ends, so removing a failed
		// build can never reach into the host's /dev or /proc.
		cmd.SysProcAttr.Unshareflags = syscall.CLONE_NEWNS
	}
	// debootstrap runs dpkg, chroot and maintainer scripts: cancel them
	// all, not just the script.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	out.flush()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("debootstrap stopped: %w", ctx.Err())
	}
	msg := fmt.Sprintf("debootstrap failed (%v)", err)
	if tail := out.tail(); len(tail) > 0 {
		msg += "; its last lines:\n    " + strings.Join(tail, "\n    ")
	}
	// debootstrap's output points at its log inside the target, which is
	// about to be removed: keep the log where the operator can read it.
	if logData, rerr := os.ReadFile(filepath.Join(target, "debootstrap", "debootstrap.log")); rerr == nil {
		kept := filepath.Join(b.cacheDir(), ".failed-"+s.key+".log")
		if werr := os.WriteFile(kept, logData, 0o600); werr == nil {
			msg += "\n  debootstrap.log, kept as " + kept + ", ends with:\n    " + strings.Join(lastLines(string(logData), 8), "\n    ")
		}
	}
	return errors.New(msg)
}

// lineWriter passes complete lines to emit and keeps the last few.
type lineWriter struct {
	emit    func(string)
	keep    int
	partial []byte
	last    []string
}

// maxLine bounds a line without a newline, so a program printing
// progress bars cannot make the buffer grow without end.
const maxLine = 4096

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := slices.Index(p, '\n')
		if i < 0 {
			w.partial = append(w.partial, p...)
			if len(w.partial) >= maxLine {
				w.line(w.partial)
				w.partial = w.partial[:0]
			}
			break
		}
		w.partial = append(w.partial, p[:i]...)
		w.line(w.partial)
		w.partial = w.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (w *lineWriter) line(b []byte) {
	l := strings.TrimRight(strings.ToValidUTF8(string(b), "?"), " \r\t")
	if l == "" {
		return
	}
	w.emit(l)
	w.last = append(w.last, l)
	if len(w.last) > w.keep {
		w.last = w.last[len(w.last)-w.keep:]
	}
}

func (w *lineWriter) flush() {
	if len(w.partial) > 0 {
		w.line(w.partial)
		w.partial = w.partial[:0]
	}
}

func (w *lineWriter) tail() []string { return w.last }

func lastLines(s string, n int) []string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// removeTree removes a build directory. A directory with something
// mounted below it is refused after trying to detach the mounts: a
// recursive removal would otherwise go on into the mounted file system,
// which for a chroot's /dev is the host's.
func removeTree(dir string) error {
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		_ = unix.Unmount(mounts[i], unix.MNT_DETACH)
	}
	if mounts, err = mountsUnder(dir); err != nil {
		return err
	}
	if len(mounts) > 0 {
		return fmt.Errorf("not removing %s: %s is still mounted", dir, mounts[0])
	}
	return os.RemoveAll(dir)
}

// mountsUnder returns the mount points at or below dir, shallowest first.
func mountsUnder(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	var found []string
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if mp == abs || strings.HasPrefix(mp, abs+"/") {
			found = append(found, mp)
		}
	}
	slices.SortFunc(found, func(a, b string) int { return strings.Count(a, "/") - strings.Count(b, "/") })
	return found, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of
// /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

func syncFS(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

func syncDir(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func megabytes(n int64) string { return fmt.Sprintf("%.0f MB", float64(n)/(1<<20)) }

// diskUsage is du's figure for a tree: allocated blocks, each inode once.
func diskUsage(root string) (int64, error) {
	seen := map[fileID]bool{}
	var total int64
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: path, Err: err}
		}
		id := fileID{st.Dev, st.Ino}
		if st.Nlink > 1 && !d.IsDir() {
			if seen[id] {
				return nil
			}
			seen[id] = true
		}
		total += st.Blocks * 512
		return nil
	})
	return total, err
}
