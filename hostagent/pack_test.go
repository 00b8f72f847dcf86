package hostagent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestPackUnpackRoundTrip(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to chown")
	}
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "lib", "pkg"), 0o755)
	os.WriteFile(filepath.Join(src, "app.py"), []byte("print(1)\n"), 0o644)
	os.WriteFile(filepath.Join(src, "run.sh"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(src, "lib", "pkg", "x"), bytes.Repeat([]byte("x"), 100000), 0o600)
	os.Symlink("lib/pkg/x", filepath.Join(src, "link"))
	// As a build container leaves it: owned by the container's root or
	// another container user.
	filepath.Walk(src, func(p string, _ fs.FileInfo, _ error) error { return os.Lchown(p, 100000, 100000) })
	os.Lchown(filepath.Join(src, "lib", "pkg", "x"), 100033, 100033)
	os.Chmod(filepath.Join(src, "run.sh"), 0o755|fs.ModeSetuid) // chown cleared it

	var buf bytes.Buffer
	if err := Pack(src, 100000, &buf, PackLimits{}); err != nil {
		t.Fatal(err)
	}
	// Owners in the archive are as the container sees them.
	tr := tar.NewReader(mustGunzip(t, buf.Bytes()))
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		if hdr.Name == "lib/pkg/x" && (hdr.Uid != 33 || hdr.Gid != 33) {
			t.Fatalf("lib/pkg/x owned by %d:%d in the archive, want 33:33", hdr.Uid, hdr.Gid)
		}
	}
	dst := filepath.Join(t.TempDir(), "out")
	if err := Unpack(bytes.NewReader(buf.Bytes()), dst, 200000); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "lib", "pkg", "x")); len(b) != 100000 {
		t.Fatalf("lib/pkg/x has %d bytes", len(b))
	}
	if l, _ := os.Readlink(filepath.Join(dst, "link")); l != "lib/pkg/x" {
		t.Fatalf("link -> %q", l)
	}
	for name, want := range map[string]int{"app.py": 200000, "lib/pkg/x": 200033, ".": 200000} {
		st, err := os.Lstat(filepath.Join(dst, name))
		if err != nil {
			t.Fatal(err)
		}
		if uid := int(st.Sys().(*syscall.Stat_t).Uid); uid != want {
			t.Errorf("%s owned by %d, want %d", name, uid, want)
		}
	}
	st, _ := os.Stat(filepath.Join(dst, "run.sh"))
	if st.Mode()&fs.ModeSetuid == 0 || st.Mode().Perm() != 0o755 {
		t.Fatalf("run.sh mode %v: setuid lost", st.Mode())
	}
}

// A tree over a limit is refused with the line users see, and Pack stops
// there: it neither reads nor writes the rest.
func TestPackLimits(t *testing.T) {
	src := t.TempDir()
	for i := range 200 {
		b := make([]byte, 8<<10)
		rand.Read(b) // incompressible: what is written shows what was read
		os.WriteFile(filepath.Join(src, fmt.Sprintf("f%04d", i)), b, 0o644)
	}
	os.Mkdir(filepath.Join(src, "sub"), 0o755) // 201 entries in all
	for _, tc := range []struct {
		lim     PackLimits
		err     string
		written int64 // at most, when refused
	}{
		{PackLimits{}, "", 0},
		{PackLimits{Entries: 201, Bytes: 2 << 20}, "", 0},
		{PackLimits{Entries: 200}, "the build left more than 200 files and directories in /app, the limit; remove what the app does not need to run", 2 << 20},
		{PackLimits{Entries: 5}, "the build left more than 5 files and directories in /app, the limit; remove what the app does not need to run", 100 << 10},
		{PackLimits{Bytes: 512 << 10}, "the build's result is over the limit of 512K (packed); remove what the app does not need to run", 512 << 10},
	} {
		var n countWriter
		err := Pack(src, 0, &n, tc.lim)
		if tc.err == "" {
			if err != nil || n.n < 200*8<<10 {
				t.Errorf("%+v: %v after %d bytes; want the whole tree", tc.lim, err, n.n)
			}
			continue
		}
		var le *LimitError
		if !errors.As(err, &le) || err.Error() != tc.err {
			t.Errorf("%+v: %v; want %q", tc.lim, err, tc.err)
		}
		if n.n > tc.written {
			t.Errorf("%+v: %d bytes written before the refusal, want at most %d", tc.lim, n.n, tc.written)
		}
	}
}

func TestUnpackStaysInside(t *testing.T) {
	outside := t.TempDir()
	for name, entries := range map[string][]tar.Header{
		"dot-dot":      {{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}},
		"absolute":     {{Name: "/" + filepath.Join(outside, "evil"), Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}},
		"through link": {{Name: "l", Typeflag: tar.TypeSymlink, Linkname: outside}, {Name: "l/evil", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}},
		"dir link":     {{Name: "d", Typeflag: tar.TypeSymlink, Linkname: "../../.."}, {Name: "d/evil", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}},
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, h := range entries {
				tw.WriteHeader(&h)
				if h.Typeflag == tar.TypeReg {
					tw.Write([]byte("x"))
				}
			}
			tw.Close()
			dst := filepath.Join(t.TempDir(), "out")
			err := Unpack(&buf, dst, uint32(os.Getuid()))
			if _, serr := os.Stat(filepath.Join(outside, "evil")); serr == nil {
				t.Fatal("the archive wrote outside its directory")
			}
			if name != "absolute" && err == nil {
				t.Fatal("no error for an escaping archive")
			}
		})
	}
}

func FuzzUnpack(f *testing.F) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "app.py", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3})
	tw.Write([]byte("x=1"))
	tw.WriteHeader(&tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/etc"})
	tw.Close()
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dst := filepath.Join(parent, "out")
		_ = Unpack(bytes.NewReader(data), dst, uint32(os.Getuid()))
		entries, _ := os.ReadDir(parent)
		for _, e := range entries {
			if e.Name() != "out" {
				t.Fatalf("wrote %q outside the target", e.Name())
			}
		}
	})
}

func mustGunzip(t *testing.T, b []byte) *bytes.Reader {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := out.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(out.Bytes())
}
