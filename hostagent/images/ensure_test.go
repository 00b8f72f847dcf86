package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeHead is the start of every fake debootstrap: it answers --version,
// counts its runs in the file "count" next to itself and finds the target
// (debootstrap's arguments end with SUITE TARGET MIRROR).
const fakeHead = `#!/bin/sh
set -e
if [ "$1" = --version ]; then echo "debootstrap 0.0-fake"; exit 0; fi
echo run >> "$(dirname "$0")/count"
for a in "$@"; do target=$prev; prev=$a; done
echo "args: $*"
`

// fakeOK makes a tiny tree with the kinds of things prepareRootfs trims or
// replaces, slowly enough for concurrent callers to overlap.
const fakeOK = fakeHead + `echo "I: Retrieving InRelease"
sleep 1
mkdir -p "$target/etc/ssl/certs" "$target/usr/bin" "$target/var/lib/apt/lists/partial" \
	"$target/var/cache/apt/archives/partial" "$target/usr/share/doc/libc6" \
	"$target/usr/share/man/man1" "$target/var/log/apt" "$target/dev" "$target/tmp"
chmod 1777 "$target/tmp"
echo pkgs > "$target/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages"
echo deb > "$target/var/cache/apt/archives/libc6_2.36_amd64.deb"
echo bin > "$target/var/cache/apt/pkgcache.bin"
echo licence > "$target/usr/share/doc/libc6/copyright"
echo news > "$target/usr/share/doc/libc6/NEWS.gz"
echo page > "$target/usr/share/man/man1/ls.1.gz"
echo log > "$target/var/log/apt/term.log"
echo log > "$target/var/log/dpkg.log"
echo cert > "$target/etc/ssl/certs/ca-certificates.crt"
printf 'nameserver 10.255.255.53\n' > "$target/etc/resolv.conf"
chmod 755 "$target/etc/resolv.conf"
ln -s /run/systemd/resolve/stub-resolv.conf "$target/etc/hosts"
printf '#!/bin/sh\necho hello\n' > "$target/usr/bin/hello"
chmod 4755 "$target/usr/bin/hello"
echo "I: Base system installed successfully."
`

// fakeFail fails as debootstrap does on an unknown package, leaving its
// log in the target.
const fakeFail = fakeHead + `mkdir -p "$target/debootstrap"
echo "I: Retrieving InRelease"
echo "I: Resolving dependencies of required packages..."
echo "dpkg: error processing package nosuchpkg (--configure):" > "$target/debootstrap/debootstrap.log"
echo "E: Couldn't find these debs: nosuchpkg"
exit 1
`

// fakeSlow stands for a build that hangs; exec so that the group kill is
// what ends it.
const fakeSlow = fakeHead + `mkdir -p "$target/etc"
echo "I: Retrieving InRelease"
sleep 61 &
echo $! > "$(dirname "$0")/childpid"
echo $$ > "$(dirname "$0")/pid"
exec sleep 60
`

func writeFake(t *testing.T, script string) (path string, runs func() int) {
	t.Helper()
	dir := t.TempDir()
	path = filepath.Join(dir, "debootstrap")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, func() int {
		data, err := os.ReadFile(filepath.Join(dir, "count"))
		if errors.Is(err, os.ErrNotExist) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(data), "run\n")
	}
}

// fakeBuilder's cache is open to container root, as the real one is:
// t.TempDir's parent is 0700.
func fakeBuilder(t *testing.T, debootstrap string) *Builder {
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &Builder{CacheDir: filepath.Join(dir, "images"), Mirror: "http://deb.example.org/debian", Debootstrap: debootstrap}
}

// recorder collects progress lines and when the first one came.
type recorder struct {
	mu    sync.Mutex
	start time.Time
	first time.Duration
	lines []string
}

func newRecorder() *recorder { return &recorder{start: time.Now(), first: -1} }

func (r *recorder) progress(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.first < 0 {
		r.first = time.Since(r.start)
	}
	r.lines = append(r.lines, line)
}

func (r *recorder) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

// TestHelperEnsure is the other process of TestEnsureBuildsOnce: a second
// agent on the same machine.
func TestHelperEnsure(t *testing.T) {
	cache := os.Getenv("UPSCALE_IMAGES_HELPER_CACHE")
	if cache == "" {
		return // run by TestEnsureBuildsOnce only
	}
	b := &Builder{CacheDir: cache, Mirror: "http://deb.example.org/debian", Debootstrap: os.Getenv("UPSCALE_IMAGES_HELPER_DEBOOTSTRAP")}
	img, err := b.Ensure(context.Background(), rt("python", "python3", "python3-venv"), func(line string) {
		fmt.Printf("PROGRESS %s\n", line)
	})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("BUILT %s %d\n", img.Key, img.Built.UnixNano())
}

func TestEnsureBuildsOnce(t *testing.T) {
	needRoot(t)
	fake, runs := writeFake(t, fakeOK)
	b := fakeBuilder(t, fake)
	r := rt("python", "python3-venv", "python3")

	// Two callers here and one in another process, all at once.
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperEnsure$", "-test.count=1")
	helper.Env = append(os.Environ(), "UPSCALE_IMAGES_HELPER_CACHE="+b.CacheDir, "UPSCALE_IMAGES_HELPER_DEBOOTSTRAP="+fake)
	var helperOut []byte
	var helperErr error
	done := make(chan struct{})
	go func() {
		helperOut, helperErr = helper.CombinedOutput()
		close(done)
	}()
	var wg sync.WaitGroup
	imgs := make([]Image, 2)
	errs := make([]error, 2)
	recs := []*recorder{newRecorder(), newRecorder()}
	for i := range 2 {
		wg.Go(func() {
			imgs[i], errs[i] = b.Ensure(context.Background(), r, recs[i].progress)
		})
	}
	wg.Wait()
	<-done
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("Ensure %d: %v", i, errs[i])
		}
		if recs[i].first < 0 || recs[i].first > time.Second {
			t.Errorf("Ensure %d: first progress line after %v, want within a second:\n%s", i, recs[i].first, recs[i].text())
		}
	}
	if helperErr != nil {
		t.Fatalf("helper process: %v\n%s", helperErr, helperOut)
	}
	if n := runs(); n != 1 {
		t.Fatalf("debootstrap ran %d times, want once", n)
	}
	img := imgs[0]
	if imgs[1] != img {
		t.Errorf("the two callers got different images:\n%+v\n%+v", imgs[0], imgs[1])
	}
	if want := fmt.Sprintf("BUILT %s %d\n", img.Key, img.Built.UnixNano()); !strings.Contains(string(helperOut), want) {
		t.Errorf("the other process did not get the same image (%q):\n%s", want, helperOut)
	}
	// Exactly one of the three built; the other caller here waited for
	// it, and so did the other process unless it came when all was done.
	var builds []string
	for i, rec := range recs {
		text := rec.text()
		if strings.Contains(text, "Building image") {
			builds = append(builds, text)
		} else if !strings.Contains(text, "Waiting for another build of image "+img.Key) || !strings.Contains(text, "another build made it") {
			t.Errorf("caller %d neither built nor waited:\n%s", i, text)
		}
	}
	if strings.Contains(string(helperOut), "PROGRESS Building image") {
		builds = append(builds, string(helperOut))
	}
	if len(builds) != 1 {
		t.Fatalf("%d callers say they built the image", len(builds))
	}
	if strings.Contains(builds[0], "Warning") {
		t.Errorf("unexpected warning:\n%s", builds[0])
	}
	for _, want := range []string{"Building image " + img.Key, "  debootstrap [1/4] downloading packages", "--variant=minbase", "--force-check-gpg", "--include=python3,python3-venv", "Copying the image with uids and gids shifted by 100000", "Image " + img.Key + " built in"} {
		if !strings.Contains(builds[0], want) {
			t.Errorf("the builder's progress lacks %q:\n%s", want, builds[0])
		}
	}

	checkImage(t, b, img)

	// Later calls find it without building or saying anything.
	rec := newRecorder()
	again, err := b.Ensure(context.Background(), r, rec.progress)
	if err != nil || again != img || runs() != 1 || rec.text() != "" {
		t.Errorf("second Ensure: %+v, %v, %d runs, progress %q", again, err, runs(), rec.text())
	}
	if got, ok := b.Lookup(r); !ok || got != img {
		t.Errorf("Lookup: %+v, %v", got, ok)
	}
	if _, ok := b.Lookup(rt("python", "python3")); ok {
		t.Error("Lookup found an image for other packages")
	}
	list, err := b.List()
	if err != nil || len(list) != 1 || list[0] != img {
		t.Errorf("List: %+v, %v", list, err)
	}
	entries, _ := os.ReadDir(b.CacheDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".build-") || strings.HasPrefix(e.Name(), ".failed-") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

// checkImage checks what prepareRootfs and Shift made of the fake's tree.
func checkImage(t *testing.T, b *Builder, img Image) {
	t.Helper()
	dir := filepath.Join(b.CacheDir, img.Key)
	if img.Rootfs != filepath.Join(dir, "private", "rootfs") || img.Shifted != filepath.Join(dir, "shifted") || img.Runtime != "python" || img.Built.IsZero() || img.Size <= 0 {
		t.Errorf("image %+v", img)
	}
	owner := func(p string) (uid, gid, mode uint32) {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		return st.Uid, st.Gid, st.Mode
	}
	for _, tc := range []struct {
		path          string
		uid, gid, typ uint32
		perm          uint32
	}{
		{dir, 0, 100000, unix.S_IFDIR, 0o750},
		{filepath.Join(dir, "private"), 0, 0, unix.S_IFDIR, 0o700},
		{img.Rootfs, 0, 0, unix.S_IFDIR, 0o755},
		{img.Shifted, 100000, 100000, unix.S_IFDIR, 0o755},
		{filepath.Join(img.Shifted, "app"), 100000, 100000, unix.S_IFDIR, 0o755},
		{filepath.Join(img.Rootfs, "app"), 0, 0, unix.S_IFDIR, 0o755},
		{filepath.Join(img.Shifted, "usr/bin/hello"), 100000, 100000, unix.S_IFREG, 0o4755},
		{filepath.Join(img.Shifted, "tmp"), 100000, 100000, unix.S_IFDIR, 0o1777},
		{filepath.Join(img.Shifted, "etc/resolv.conf"), 100000, 100000, unix.S_IFREG, 0o644},
		{filepath.Join(img.Shifted, "etc/hosts"), 100000, 100000, unix.S_IFREG, 0o644},
		{filepath.Join(img.Shifted, "etc/hostname"), 100000, 100000, unix.S_IFREG, 0o644},
	} {
		uid, gid, mode := owner(tc.path)
		if uid != tc.uid || gid != tc.gid || mode&unix.S_IFMT != tc.typ || mode&0o7777 != tc.perm {
			t.Errorf("%s: %d:%d mode %o, want %d:%d type %o perm %o", tc.path, uid, gid, mode, tc.uid, tc.gid, tc.typ, tc.perm)
		}
	}
	for _, tree := range []string{img.Rootfs, img.Shifted} {
		gone := []string{
			"var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages",
			"var/cache/apt/archives/libc6_2.36_amd64.deb", "var/cache/apt/pkgcache.bin",
			"usr/share/doc/libc6/NEWS.gz", "usr/share/man/man1", "var/log/apt/term.log", "var/log/dpkg.log",
		}
		for _, p := range gone {
			if _, err := os.Lstat(filepath.Join(tree, p)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: %s was not removed (%v)", tree, p, err)
			}
		}
		kept := []string{
			"usr/share/doc/libc6/copyright", "etc/ssl/certs/ca-certificates.crt", "var/lib/apt/lists/partial",
			"var/cache/apt/archives/partial", "var/log/apt", "app", "etc/dpkg/dpkg.cfg.d/upscale-excludes",
		}
		for _, p := range kept {
			if _, err := os.Lstat(filepath.Join(tree, p)); err != nil {
				t.Errorf("%s: %v", tree, err)
			}
		}
		if data, _ := os.ReadFile(filepath.Join(tree, "etc/resolv.conf")); strings.Contains(string(data), "nameserver") {
			t.Errorf("the build host's resolv.conf is baked into the image: %q", data)
		}
		if entries, _ := os.ReadDir(filepath.Join(tree, "app")); len(entries) != 0 {
			t.Errorf("/app is not empty: %v", entries)
		}
	}

	var m manifest
	data, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if m.Key != img.Key || m.Runtime != "python" || strings.Join(m.Packages, ",") != "python3,python3-venv" || !m.Built.Equal(img.Built) ||
		m.Debootstrap == "" || m.Size != img.Size || m.Suite != "bookworm" || m.Mirror == "" || m.Shift != 100000 {
		t.Errorf("manifest:\n%s", data)
	}
}

func TestEnsureFailure(t *testing.T) {
	needRoot(t)
	fake, runs := writeFake(t, fakeFail)
	b := fakeBuilder(t, fake)
	r := rt("python", "python3", "nosuchpkg")
	rec := newRecorder()
	_, err := b.Ensure(context.Background(), r, rec.progress)
	if err == nil {
		t.Fatal("Ensure succeeded with a failing debootstrap")
	}
	msg := err.Error()
	for _, want := range []string{"python image", "debootstrap failed (exit status 1)", "E: Couldn't find these debs: nosuchpkg", "Resolving dependencies", "dpkg: error processing package nosuchpkg"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if !strings.Contains(rec.text(), "  E: Couldn't find these debs: nosuchpkg") {
		t.Errorf("progress:\n%s", rec.text())
	}
	// A failure shows debootstrap's whole output, the lines a success
	// condenses included.
	if !strings.Contains(rec.text(), "  debootstrap's output:\n    args: ") || !strings.Contains(rec.text(), "\n    I: Resolving dependencies of required packages...\n") {
		t.Errorf("progress of a failure lacks the whole output:\n%s", rec.text())
	}
	t.Logf("error:\n%s", msg)

	// Nothing an image could be mistaken for: only the lock and the log.
	entries, err := os.ReadDir(b.CacheDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".lock-") && !strings.HasPrefix(e.Name(), ".failed-") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	if _, ok := b.Lookup(r); ok {
		t.Error("Lookup found an image after a failed build")
	}
	if list, err := b.List(); err != nil || len(list) != 0 {
		t.Errorf("List: %+v, %v", list, err)
	}

	// The next attempt builds again (no failure is cached), and its
	// success drops the old failure's log.
	if err := os.WriteFile(fake, []byte(fakeOK), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Ensure(context.Background(), r, nil); err != nil {
		t.Fatal(err)
	}
	if runs() != 2 {
		t.Errorf("%d runs, want 2", runs())
	}
	matches, _ := filepath.Glob(filepath.Join(b.CacheDir, ".failed-*"))
	if len(matches) != 0 {
		t.Errorf("old failure log kept: %v", matches)
	}
}

func TestEnsureCancel(t *testing.T) {
	needRoot(t)
	fake, _ := writeFake(t, fakeSlow)
	b := fakeBuilder(t, fake)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{})
	var once sync.Once
	progress := func(line string) {
		if strings.Contains(line, "downloading packages") {
			once.Do(func() { close(started) })
		}
	}
	errc := make(chan error, 1)
	go func() {
		_, err := b.Ensure(ctx, rt("python", "python3"), progress)
		errc <- err
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the fake debootstrap did not start")
	}

	// A second caller gives up waiting when its own context ends.
	wctx, wcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer wcancel()
	if _, err := b.Ensure(wctx, rt("python", "python3"), nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting caller: %v, want deadline exceeded", err)
	}

	start := time.Now()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Ensure did not return after cancel")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Ensure took %v to return after cancel", d)
	}
	entries, _ := os.ReadDir(b.CacheDir)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".lock-") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	// No process of the fake survives: the whole group was killed.
	for _, name := range []string{"pid", "childpid"} {
		data, err := os.ReadFile(filepath.Join(filepath.Dir(fake), name))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		deadline := time.Now().Add(2 * time.Second)
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(pid) {
			t.Errorf("process %d (%s) of the fake debootstrap survived", pid, name)
		}
	}
}

// alive reports whether pid runs: zombies, waiting for a parent to reap
// them, do not count.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(data), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// TestEnsureRemovesLeftovers: a build killed with its process leaves a
// .build- directory and the lock free; the next build clears it away.
func TestEnsureRemovesLeftovers(t *testing.T) {
	needRoot(t)
	fake, _ := writeFake(t, fakeOK)
	b := fakeBuilder(t, fake)
	r := rt("python", "python3")
	s, err := b.spec(r)
	if err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(b.CacheDir, ".build-"+s.key+"-123", "private", "rootfs", "etc")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(b.CacheDir, ".build-ruby-000000000000-1")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	// And a directory at the key's name without a manifest.
	if err := os.MkdirAll(filepath.Join(b.CacheDir, s.key, "shifted"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Lookup(r); ok {
		t.Fatal("Lookup took a directory without a manifest for an image")
	}
	if _, err := b.Ensure(context.Background(), r, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(filepath.Dir(filepath.Dir(stale)))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale build kept: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another key's build was touched: %v", err)
	}
	if aside, _ := filepath.Glob(filepath.Join(b.CacheDir, ".broken-"+s.key+"-*")); len(aside) != 1 {
		t.Errorf("incomplete image not moved aside: %v", aside)
	}
}

// An agent whose containers use another id range (a user held the first
// one) gets its own shifted copy of the same tree, without a second
// debootstrap.
func TestEnsureOtherShiftReusesTheTree(t *testing.T) {
	needRoot(t)
	fake, runs := writeFake(t, fakeOK)
	b := fakeBuilder(t, fake)
	r := rt("python", "python3")
	first, err := b.Ensure(context.Background(), r, nil)
	if err != nil {
		t.Fatal(err)
	}
	other := *b
	other.Shift = 165536
	rec := newRecorder()
	img, err := other.Ensure(context.Background(), r, rec.progress)
	if err != nil {
		t.Fatal(err)
	}
	if n := runs(); n != 1 {
		t.Errorf("debootstrap ran %d times, want once", n)
	}
	if img.Key == first.Key || !strings.Contains(rec.text(), "Reusing the Debian tree of image "+first.Key) {
		t.Errorf("key %s (first %s), progress:\n%s", img.Key, first.Key, rec.text())
	}
	for _, c := range []struct {
		path     string
		uid, gid uint32
	}{
		{filepath.Join(img.Shifted, "usr/bin/hello"), 165536, 165536},
		{filepath.Join(first.Shifted, "usr/bin/hello"), 100000, 100000},
		{filepath.Join(img.Rootfs, "usr/bin/hello"), 0, 0},
	} {
		var st unix.Stat_t
		if err := unix.Lstat(c.path, &st); err != nil || st.Uid != c.uid || st.Gid != c.gid || st.Mode&0o7777 != 0o4755 {
			t.Errorf("%s: %d:%d mode %o, %v; want %d:%d 4755", c.path, st.Uid, st.Gid, st.Mode&0o7777, err, c.uid, c.gid)
		}
	}
	// The first image stays whole, and a third Ensure builds nothing.
	if again, ok := b.Lookup(r); !ok || again != first {
		t.Errorf("first image after the second build: %+v, %v", again, ok)
	}
	if again, err := other.Ensure(context.Background(), r, nil); err != nil || again != img || runs() != 1 {
		t.Errorf("Ensure again: %+v, %v, %d debootstrap runs", again, err, runs())
	}
}

// Namespaces new to a host ask for their images together (one id range
// each): one debootstrap serves them all, each gets its own shifted copy.
func TestEnsureShiftsTogetherDebootstrapOnce(t *testing.T) {
	needRoot(t)
	fake, runs := writeFake(t, fakeOK)
	b := fakeBuilder(t, fake)
	r := rt("python", "python3")
	shifts := []uint32{100000, 165536, 231072}
	imgs := make([]Image, len(shifts))
	errs := make([]error, len(shifts))
	recs := make([]*recorder, len(shifts))
	var wg sync.WaitGroup
	for i, shift := range shifts {
		recs[i] = newRecorder()
		wg.Go(func() {
			one := *b
			one.Shift = shift
			imgs[i], errs[i] = one.Ensure(context.Background(), r, recs[i].progress)
		})
	}
	wg.Wait()
	if n := runs(); n != 1 {
		t.Errorf("debootstrap ran %d times for %d ranges, want once", n, len(shifts))
	}
	reused := 0
	for i, shift := range shifts {
		if errs[i] != nil {
			t.Fatalf("Ensure for %d: %v", shift, errs[i])
		}
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(imgs[i].Shifted, "usr/bin/hello"), &st); err != nil || st.Uid != shift || st.Gid != shift {
			t.Errorf("image for %d: usr/bin/hello owned by %d:%d, %v", shift, st.Uid, st.Gid, err)
		}
		if strings.Contains(recs[i].text(), "Reusing the Debian tree of image") {
			reused++
		}
	}
	if reused != len(shifts)-1 {
		t.Errorf("%d builds reused the tree, want %d", reused, len(shifts)-1)
	}
	if list, err := b.List(); err != nil || len(list) != len(shifts) {
		t.Errorf("List: %d images, %v; want %d", len(list), err, len(shifts))
	}
}

func TestLineWriter(t *testing.T) {
	var got []string
	w := &lineWriter{emit: func(l string) { got = append(got, l) }, keep: 2}
	long := strings.Repeat("x", maxLine+10)
	for _, chunk := range []string{"I: one\nI: t", "wo\r\n\n  \nI: three", long, "tail"} {
		w.Write([]byte(chunk))
	}
	w.flush()
	want := []string{"I: one", "I: two", "I: three" + long, "tail"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines %q, want %q", got, want)
	}
	if tail := w.tail(); len(tail) != 2 || tail[0] != want[2] || tail[1] != "tail" {
		t.Errorf("tail %q", tail)
	}
}

func TestUnreachable(t *testing.T) {
	needRoot(t)
	base := t.TempDir()
	if err := os.Chmod(filepath.Dir(base), 0o755); err != nil {
		t.Fatal(err)
	}
	mk := func(p string, mode os.FileMode, uid, gid int) string {
		p = filepath.Join(base, p)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := os.Chmod(base, 0o711); err != nil {
		t.Fatal(err)
	}
	open := mk("open", 0o755, 0, 0)
	group := mk("open/group", 0o750, 0, 100000)
	closed := mk("open/group/closed", 0o700, 0, 0)
	mk("open/group/closed/inner", 0o755, 0, 0)
	for dir, want := range map[string]string{
		open:                           "",
		group:                          "",
		closed:                         closed,
		filepath.Join(closed, "inner"): closed,
		filepath.Join(base, "missing"): filepath.Join(base, "missing"),
	} {
		if got := unreachable(dir, 100000); got != want {
			t.Errorf("unreachable(%s) = %q, want %q", dir, got, want)
		}
	}
	if got := unreachable(group, 200000); got != group {
		t.Errorf("another uid passed %s: %q", group, got)
	}
}

// debootstrap's ~600 lines show as a few numbered steps; warnings pass
// through; the whole output shows when it fails.
func TestDebootstrapOutputAsSteps(t *testing.T) {
	data, err := os.ReadFile("testdata/debootstrap.out")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	var got []string
	s := newSteps(func(l string) { got = append(got, l) })
	clock := time.Unix(1000, 0)
	s.now = func() time.Time { return clock }
	for _, l := range lines {
		clock = clock.Add(100 * time.Millisecond)
		s.line(l)
	}
	want := []string{
		"  debootstrap [1/4] downloading packages",
		"  debootstrap [1/4] downloading packages: 72 so far",
		"  W: an example warning that must still be shown",
		"  debootstrap [2/4] extracting packages",
		"  debootstrap [3/4] installing the required packages",
		"  debootstrap [4/4] installing the base packages",
		"  debootstrap [4/4] installing the base packages: 86 so far",
		"  debootstrap: done in 56s",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%d lines of debootstrap showed as:\n%s\nwant:\n%s", len(lines), strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	got = nil
	s.dump()
	if len(got) != len(lines)+1 || got[1] != "    "+lines[0] || got[len(got)-1] != "    "+lines[len(lines)-1] {
		t.Errorf("the dump of a failure has %d lines, want the header and all %d", len(got), len(lines))
	}
}
