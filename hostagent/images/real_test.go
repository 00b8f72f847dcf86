package images

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/upscalehq/upscale/runtimes"
)

// smoke is a command per runtime that prints "1" when the runtime works.
var smoke = map[string][]string{
	"python": {"python3", "-c", "print(1)"},
	"php":    {"php", "-r", "echo 1, PHP_EOL;"},
	"ruby":   {"ruby", "-e", "puts 1"},
}

// TestEnsureReal builds the built-in runtimes' images with the real
// debootstrap from this machine's mirror into the real cache, which it
// leaves in place: later runs, and the agent, reuse the images. python is
// always built; php and ruby when UPSCALE_IMAGES_ALL=1 or when they are
// already cached, where checking them costs nothing.
func TestEnsureReal(t *testing.T) {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		missing = append(missing, "debootstrap (apt-get install debootstrap)")
	}
	if len(missing) > 0 {
		msg := "building real images needs " + strings.Join(missing, " and ")
		if os.Getenv("UPSCALE_E2E") == "1" {
			t.Fatal(msg + "; UPSCALE_E2E=1 forbids skipping")
		}
		t.Skip(msg)
	}
	catalog, err := runtimes.Load("")
	if err != nil {
		t.Fatal(err)
	}
	b := &Builder{}
	for _, name := range []string{"python", "php", "ruby"} {
		t.Run(name, func(t *testing.T) {
			r, ok := catalog.Get(name)
			if !ok {
				t.Fatalf("no built-in runtime %s", name)
			}
			if _, cached := b.Lookup(r); name != "python" && !cached && os.Getenv("UPSCALE_IMAGES_ALL") != "1" {
				t.Skipf("the %s image is not cached; UPSCALE_IMAGES_ALL=1 builds it (a minute or two)", name)
			}
			testRealImage(t, b, r)
		})
	}
}

func testRealImage(t *testing.T, b *Builder, r runtimes.Runtime) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	rec := newRecorder()
	img, err := b.Ensure(ctx, r, func(line string) {
		rec.progress(line)
		t.Log(line)
	})
	if err != nil {
		t.Fatal(err)
	}
	if rec.text() != "" && rec.first > time.Second {
		t.Errorf("first progress line after %v", rec.first)
	}
	t.Logf("image %s: built %s, %s", img.Key, img.Built.Format(time.RFC3339), megabytes(img.Size))

	// The runtime runs in the unshifted tree.
	out, err := exec.CommandContext(ctx, "chroot", append([]string{img.Rootfs}, smoke[r.Name]...)...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Errorf("chroot %s %v: %q, %v", img.Rootfs, smoke[r.Name], out, err)
	}

	var st unix.Stat_t
	if err := unix.Lstat(img.Shifted, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 100000 || st.Gid != 100000 {
		t.Errorf("shifted / is owned by %d:%d, want 100000:100000", st.Uid, st.Gid)
	}
	for _, p := range []string{"etc/resolv.conf", "etc/hosts"} {
		if err := unix.Lstat(filepath.Join(img.Shifted, p), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != 100000 {
			t.Errorf("%s: not a regular file of container root (%v, mode %o, uid %d)", p, err, st.Mode, st.Uid)
		}
	}
	if err := unix.Lstat(filepath.Join(img.Shifted, "app"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != 100000 {
		t.Errorf("/app: %v, mode %o, uid %d", err, st.Mode, st.Uid)
	}
	if lists, _ := filepath.Glob(filepath.Join(img.Rootfs, "var/lib/apt/lists/*_Packages")); len(lists) > 0 {
		t.Errorf("apt lists left in the image: %v", lists)
	}
	if _, err := os.Stat(filepath.Join(img.Rootfs, "etc/ssl/certs/ca-certificates.crt")); err != nil {
		t.Errorf("CA certificates: %v", err)
	}

	checkUnprivileged(t, ctx, img, smoke[r.Name])

	// A second Ensure finds the image: same build, at once, silently.
	start := time.Now()
	rec2 := newRecorder()
	again, err := b.Ensure(ctx, r, rec2.progress)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Built.Equal(img.Built) || again != img {
		t.Errorf("second Ensure rebuilt: %+v, was %+v", again, img)
	}
	if d := time.Since(start); d > time.Second || rec2.text() != "" {
		t.Errorf("second Ensure took %v and said %q", d, rec2.text())
	}
}

// checkUnprivileged does what an unprivileged container does with the
// image: in a user namespace mapping 0-65535 to 100000-165535, mount an
// overlay with the shifted tree as its lower dir, see root own it, and run
// the runtime in it.
func checkUnprivileged(t *testing.T, ctx context.Context, img Image, cmd []string) {
	// Not t.TempDir, whose parent is closed to container root, which must
	// reach the overlay's directories as it must reach the image's (see
	// the package comment).
	dir, err := os.MkdirTemp("", "upst-images-userns-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, 0, 100000); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"upper", "work", "merged"} {
		p := filepath.Join(dir, d)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, 100000, 100000); err != nil {
			t.Fatal(err)
		}
	}
	script := `set -e
mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$2/merged"
stat -c '%u:%g' "$2/merged" "$2/merged/app"
root=$2/merged
shift 2
chroot "$root" "$@"
`
	c := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", script, "sh", img.Shifted, dir}, cmd...)...)
	c.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		Credential:  &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true},
	}
	out, err := c.CombinedOutput()
	if err != nil || string(out) != "0:0\n0:0\n1\n" {
		t.Errorf("in a user namespace like a container's: %q, %v", out, err)
	}
}
