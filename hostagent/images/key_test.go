package images

import (
	"regexp"
	"strings"
	"testing"

	"github.com/upscalehq/upscale/runtimes"
)

const testMirror = "http://deb.debian.org/debian"

func rt(name string, pkgs ...string) runtimes.Runtime {
	return runtimes.Runtime{Name: name, Packages: pkgs}
}

func key(t *testing.T, b Builder, r runtimes.Runtime) string {
	t.Helper()
	s, err := b.spec(r)
	if err != nil {
		t.Fatal(err)
	}
	return s.key
}

func TestKeyStable(t *testing.T) {
	// A fixed input keeps its key: a change here means every machine
	// rebuilds its images, which must be on purpose (bump formatVersion).
	s := spec{runtime: "python", packages: []string{"python3", "python3-venv"}, suite: "bookworm", mirror: testMirror, arch: "amd64", shift: 100000}
	if got, want := s.computeKey(), "python-d948126decfd"; got != want {
		t.Errorf("key %s, want %s", got, want)
	}

	b := Builder{Mirror: testMirror}
	k := key(t, b, rt("python", "python3", "python3-venv"))
	if !regexp.MustCompile(`^python-[0-9a-f]{12}$`).MatchString(k) {
		t.Errorf("key %q", k)
	}
	same := []struct {
		name string
		b    Builder
		r    runtimes.Runtime
	}{
		{"package order", b, rt("python", "python3-venv", "python3")},
		{"duplicate package", b, rt("python", "python3", "python3-venv", "python3")},
		{"mirror with a trailing slash", Builder{Mirror: testMirror + "/"}, rt("python", "python3", "python3-venv")},
		{"explicit defaults", Builder{Mirror: testMirror, Suite: "bookworm", Shift: 100000, CacheDir: "/elsewhere", Debootstrap: "/opt/debootstrap"}, rt("python", "python3", "python3-venv")},
	}
	for _, tc := range same {
		if got := key(t, tc.b, tc.r); got != k {
			t.Errorf("%s changed the key: %s, want %s", tc.name, got, k)
		}
	}
	different := []struct {
		name string
		b    Builder
		r    runtimes.Runtime
	}{
		{"suite", Builder{Mirror: testMirror, Suite: "trixie"}, rt("python", "python3", "python3-venv")},
		{"mirror", Builder{Mirror: "http://ftp.fr.debian.org/debian"}, rt("python", "python3", "python3-venv")},
		{"added package", b, rt("python", "python3", "python3-venv", "python3-pip")},
		{"removed package", b, rt("python", "python3")},
		{"changed package", b, rt("python", "python3", "python3-dev")},
		{"shift", Builder{Mirror: testMirror, Shift: 200000}, rt("python", "python3", "python3-venv")},
		{"runtime name", b, rt("python3", "python3", "python3-venv")},
	}
	seen := map[string]string{k: "base"}
	for _, tc := range different {
		got := key(t, tc.b, tc.r)
		if prev, dup := seen[got]; dup {
			t.Errorf("%s gives key %s, as %s does", tc.name, got, prev)
		}
		seen[got] = tc.name
	}
	// Packages joined differently must not collide.
	if key(t, b, rt("x", "abc", "de")) == key(t, b, rt("x", "ab", "cde")) {
		t.Error("package boundaries are not part of the key")
	}
}

func TestSpecRejects(t *testing.T) {
	b := Builder{Mirror: testMirror}
	for _, tc := range []struct {
		b    Builder
		r    runtimes.Runtime
		want string
	}{
		{b, rt("Python", "python3"), "invalid runtime name"},
		{b, rt("../x", "python3"), "invalid runtime name"},
		{b, rt("python", "python3,evil"), "invalid Debian package name"},
		{b, rt("python", "--foreign"), "invalid Debian package name"},
		{Builder{Mirror: "mirror+file:/x"}, rt("python", "python3"), "debootstrap fetches"},
		{Builder{Mirror: testMirror, Suite: "bookworm --x"}, rt("python", "python3"), "invalid suite"},
	} {
		_, err := tc.b.spec(tc.r)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v %+v: err = %v, want %q", tc.b, tc.r, err, tc.want)
		}
	}
}
