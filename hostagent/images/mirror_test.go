package images

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "apt", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseSources(t *testing.T) {
	for _, tc := range []struct {
		file  string
		suite string
		want  string
	}{
		// This machine's file: snapshot URLs in comments between fields,
		// a -security paragraph after the main one.
		{"debian.sources", "bookworm", "http://deb.debian.org/debian"},
		{"debian.sources", "trixie", ""},
		// Security first, deb-src, options in brackets, trailing comment.
		{"sources.list", "bookworm", "http://ftp.fr.debian.org/debian"},
		{"sources.list", "bookworm-updates", "http://ftp.fr.debian.org/debian"},
		{"bracket.list", "bookworm", "https://deb.example.com/debian"},
		// Enabled: no, mirror+file skipped, folded URIs.
		{"mirrors.sources", "bookworm", "https://mirror.example.net/debian"},
		// Another suite, and a deb-src paragraph that does not count.
		{"trixie.sources", "bookworm", ""},
		{"trixie.sources", "trixie", "http://deb.debian.org/debian"},
	} {
		got := parseSources(fixture(t, tc.file), strings.HasSuffix(tc.file, ".sources"), tc.suite)
		if got != tc.want {
			t.Errorf("%s for %s: %q, want %q", tc.file, tc.suite, got, tc.want)
		}
	}
}

func TestParseSourcesEdges(t *testing.T) {
	for _, tc := range []struct {
		name   string
		deb822 bool
		in     string
		want   string
	}{
		{"security archive under the main suite", false, "deb http://security.debian.org/debian-security bookworm main\n", ""},
		{"no main component", false, "deb http://deb.debian.org/debian bookworm contrib\n", ""},
		{"unclosed options", false, "deb [arch=amd64 http://deb.debian.org/debian bookworm main\n", ""},
		{"CRLF", false, "deb http://deb.debian.org/debian bookworm main\r\n", "http://deb.debian.org/debian"},
		{"cdrom", false, "deb cdrom:[Debian]/ bookworm main\n", ""},
		{"file mirror", false, "deb file:/srv/mirror/debian bookworm main\n", "file:/srv/mirror/debian"},
		{"shell in URI", false, "deb http://x/$(reboot) bookworm main\n", "http://x/$(reboot)"},
		{"field names any case, CRLF", true, "types: deb\r\nuris: http://a.example/debian\r\nsuites: bookworm\r\ncomponents: main\r\n", "http://a.example/debian"},
		{"no Types", true, "URIs: http://a.example/debian\nSuites: bookworm\nComponents: main\n", ""},
		{"exact suite path, no components", true, "Types: deb\nURIs: http://a.example/debian\nSuites: bookworm/\n", ""},
		{"second paragraph after comment-only lines", true, "Types: deb\nURIs: http://a.example/debian\nSuites: sid\nComponents: main\n\n# c\n\nTypes: deb\nURIs: http://b.example/debian\nSuites: bookworm\nComponents: main\n", "http://b.example/debian"},
	} {
		if got := parseSources([]byte(tc.in), tc.deb822, "bookworm"); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestDetectMirror(t *testing.T) {
	file := func(name string) *fstest.MapFile { return &fstest.MapFile{Data: fixture(t, name)} }
	for _, tc := range []struct {
		name string
		fs   fstest.MapFS
		want string
	}{
		{"deb822 only, like this machine", fstest.MapFS{
			"etc/apt/sources.list.d/debian.sources":                 file("debian.sources"),
			"etc/apt/sources.list.d/nodesource.sources.disabled-by": file("mirrors.sources"),
		}, "http://deb.debian.org/debian"},
		{"sources.list first, as apt reads it", fstest.MapFS{
			"etc/apt/sources.list":                  file("sources.list"),
			"etc/apt/sources.list.d/debian.sources": file("debian.sources"),
		}, "http://ftp.fr.debian.org/debian"},
		{"sources.list.d in name order, .list and .sources alike", fstest.MapFS{
			"etc/apt/sources.list.d/a.sources": file("trixie.sources"),
			"etc/apt/sources.list.d/b.list":    file("bracket.list"),
			"etc/apt/sources.list.d/c.sources": file("debian.sources"),
		}, "https://deb.example.com/debian"},
	} {
		got, err := detectMirror(tc.fs, "bookworm")
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	_, err := detectMirror(fstest.MapFS{"etc/apt/sources.list.d/t.sources": file("trixie.sources")}, "bookworm")
	if err == nil || !strings.Contains(err.Error(), "no apt source for bookworm") {
		t.Errorf("no match: err = %v", err)
	}
}

func TestDetectMirrorHere(t *testing.T) {
	m, err := DetectMirror()
	if err != nil {
		t.Skipf("this machine's apt sources have no bookworm main entry: %v", err)
	}
	if _, err := normalizeMirror(m); err != nil {
		t.Fatalf("DetectMirror returned %q: %v", m, err)
	}
	t.Logf("mirror: %s", m)
}

func TestNormalizeMirror(t *testing.T) {
	for in, want := range map[string]string{
		"http://deb.debian.org/debian/":   "http://deb.debian.org/debian",
		"http://deb.debian.org/debian":    "http://deb.debian.org/debian",
		"https://u:p@m.example/debian":    "https://u:p@m.example/debian",
		"file:///srv/debian":              "file:///srv/debian",
		"http://deb.debian.org/":          "http://deb.debian.org",
		"ftp://ftp.example.org/debian///": "ftp://ftp.example.org/debian",
	} {
		if got, err := normalizeMirror(in); err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{
		"", "deb.debian.org/debian", "-v", "--include=x", "http://", "http:///debian", "file:///",
		"mirror+file:/etc/apt/m.list", "http://a/b c", "http://a/b\n", "http://a/b?x=1", "http://a/b#f",
		"http://security.debian.org/debian-security", "file://host/srv", "http://a/é",
	} {
		if got, err := normalizeMirror(bad); err == nil {
			t.Errorf("%q accepted as %q", bad, got)
		}
	}
}

// FuzzParseSources feeds apt source files, real ones as seeds
// (testdata/fuzz/FuzzParseSources), to both parsers. Whatever comes back
// must be a mirror normalizeMirror accepts as it is, taken from the input.
func FuzzParseSources(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, deb822 bool) {
		m := parseSources(data, deb822, "bookworm")
		if m == "" {
			return
		}
		if n, err := normalizeMirror(m); err != nil || n != m {
			t.Fatalf("returned %q, which normalizes to %q, %v", m, n, err)
		}
		if !bytes.Contains(data, []byte(m)) {
			t.Fatalf("returned %q, which is not in the input", m)
		}
	})
}

func TestParseSourcesLarge(t *testing.T) {
	// A long folded field or a file of a million lines must not take
	// quadratic time.
	deb822 := "Types: deb\nSuites: bookworm\nComponents: main\nURIs: http://a.example/debian\n" + strings.Repeat(" http://b.example/debian\n", maxSourcesFile/26)
	oneLine := strings.Repeat("deb http://a.example/debian sid main\n", maxSourcesFile/38)
	start := time.Now()
	if got := parseSources([]byte(deb822), true, "bookworm"); got != "http://a.example/debian" {
		t.Errorf("deb822: %q", got)
	}
	if got := parseSources([]byte(oneLine), false, "bookworm"); got != "" {
		t.Errorf("one-line: %q", got)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("parsing 2 MB took %v", d)
	}
}
