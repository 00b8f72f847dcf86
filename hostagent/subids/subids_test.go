package subids

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func files(t *testing.T, uid, gid string) Files {
	t.Helper()
	dir := t.TempDir()
	f := Files{UID: filepath.Join(dir, "subuid"), GID: filepath.Join(dir, "subgid"), Lock: filepath.Join(dir, ".pwd.lock")}
	for path, data := range map[string]string{f.UID: uid, f.GID: gid} {
		if data == "-" {
			continue // no such file
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReserve(t *testing.T) {
	for _, tc := range []struct {
		name             string
		uid, gid         string
		want             uint32 // argument
		start            uint32
		wantUID, wantGID string // the files afterwards
	}{
		{name: "fresh machine", uid: "", gid: "", start: 100000,
			wantUID: "root:100000:65536\n", wantGID: "root:100000:65536\n"},
		{name: "no files at all", uid: "-", gid: "-", start: 100000,
			wantUID: "root:100000:65536\n", wantGID: "root:100000:65536\n"},
		{name: "first user holds the default range (Debian cloud images, useradd)",
			uid: "debian:100000:65536\n", gid: "debian:100000:65536\n", start: 165536,
			wantUID: "debian:100000:65536\nroot:165536:65536\n", wantGID: "debian:100000:65536\nroot:165536:65536\n"},
		{name: "root already holds a range: nothing written",
			uid: "alice:100000:65536\nroot:231072:65536\n", gid: "root:231072:65536\nalice:100000:65536\n", start: 231072,
			wantUID: "alice:100000:65536\nroot:231072:65536\n", wantGID: "root:231072:65536\nalice:100000:65536\n"},
		{name: "root's range in one file only is completed in the other",
			uid: "root:300000:65536\n", gid: "# groups\n", start: 300000,
			wantUID: "root:300000:65536\n", wantGID: "# groups\nroot:300000:65536\n"},
		{name: "a range of root that another user overlaps is not used",
			uid: "root:100000:65536\nbob:120000:10\n", gid: "root:100000:65536\n", start: 165536,
			wantUID: "root:100000:65536\nbob:120000:10\nroot:165536:65536\n", wantGID: "root:100000:65536\nroot:165536:65536\n"},
		{name: "root's range too small is not used",
			uid: "root:100000:1000\n", gid: "root:100000:1000\n", start: 101000,
			wantUID: "root:100000:1000\nroot:101000:65536\n", wantGID: "root:100000:1000\nroot:101000:65536\n"},
		{name: "a gap that fits is used; one that does not is skipped",
			uid: "a:100000:65536\nx:170000:10\nb:240000:65536\n", gid: "d:165536:1\n", start: 170010,
			wantUID: "a:100000:65536\nx:170000:10\nb:240000:65536\nroot:170010:65536\n", wantGID: "d:165536:1\nroot:170010:65536\n"},
		{name: "a file without a final newline keeps its last line",
			uid: "alice:100000:65536", gid: "alice:100000:65536", start: 165536,
			wantUID: "alice:100000:65536\nroot:165536:65536\n", wantGID: "alice:100000:65536\nroot:165536:65536\n"},
		{name: "the range asked for is added where missing", uid: "root:165536:65536\n", gid: "", want: 165536, start: 165536,
			wantUID: "root:165536:65536\n", wantGID: "root:165536:65536\n"},
		{name: "the range asked for wins over root's lower one", uid: "root:100000:65536\n", gid: "root:100000:65536\n", want: 400000, start: 400000,
			wantUID: "root:100000:65536\nroot:400000:65536\n", wantGID: "root:100000:65536\nroot:400000:65536\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := files(t, tc.uid, tc.gid)
			got, err := f.Reserve(context.Background(), tc.want, 65536)
			if err != nil || got != tc.start {
				t.Fatalf("Reserve = %d, %v; want %d", got, err, tc.start)
			}
			if u, g := read(t, f.UID), read(t, f.GID); u != tc.wantUID || g != tc.wantGID {
				t.Errorf("files:\nsubuid %q\nsubgid %q\nwant\nsubuid %q\nsubgid %q", u, g, tc.wantUID, tc.wantGID)
			}
			// Asking again changes nothing and gives the same range.
			again, err := f.Reserve(context.Background(), tc.want, 65536)
			if err != nil || again != got || read(t, f.UID) != tc.wantUID || read(t, f.GID) != tc.wantGID {
				t.Errorf("second Reserve = %d, %v, files changed: %q %q", again, err, read(t, f.UID), read(t, f.GID))
			}
		})
	}
}

func TestReserveRefuses(t *testing.T) {
	for _, tc := range []struct {
		name     string
		uid, gid string
		want     uint32
		err      string
	}{
		{"the range asked for belongs to a user", "alice:100000:65536\n", "", 100000,
			"subids: UID: ids 100000-165535 of the containers overlap alice's range 100000-165535"},
		{"the range asked for overlaps a group range", "", "root:100000:10\nbob:165000:10\n", 100000,
			"subids: GID: ids 100000-165535 of the containers overlap bob's range 165000-165009"},
		{"past the last id", "", "", 1<<32 - 65536, "subids: ids 4294901760-4294967295 go past 4294967294"},
		{"nothing free", "a:100000:4294867295\n", "", 0, "subids: no 65536 free ids in UID and GID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := files(t, tc.uid, tc.gid)
			_, err := f.Reserve(context.Background(), tc.want, 65536)
			msg := ""
			if err != nil {
				msg = strings.NewReplacer(f.UID, "UID", f.GID, "GID").Replace(err.Error())
			}
			if msg != tc.err {
				t.Errorf("Reserve error %q, want %q", msg, tc.err)
			}
			if read(t, f.UID) != tc.uid || read(t, f.GID) != tc.gid {
				t.Errorf("a refused Reserve changed the files: %q %q", read(t, f.UID), read(t, f.GID))
			}
		})
	}
}

// Agents starting together (several test packages, several hosts on one
// machine) agree on one range and write it once.
func TestReserveConcurrent(t *testing.T) {
	f := files(t, "alice:100000:65536\n", "")
	var wg sync.WaitGroup
	got := make([]uint32, 16)
	errs := make([]error, 16)
	for i := range got {
		wg.Go(func() { got[i], errs[i] = f.Reserve(context.Background(), 0, 65536) })
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil || got[i] != 165536 {
			t.Errorf("Reserve %d = %d, %v; want 165536", i, got[i], errs[i])
		}
	}
	if u, g := read(t, f.UID), read(t, f.GID); u != "alice:100000:65536\nroot:165536:65536\n" || g != "root:165536:65536\n" {
		t.Errorf("files %q %q", u, g)
	}
}

// While useradd holds lckpwdf's lock, Reserve waits for it.
func TestReserveWaitsForTheLock(t *testing.T) {
	f := files(t, "", "")
	unlock, err := lockFile(context.Background(), f.Lock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.Reserve(ctx, 0, 65536); err == nil || !strings.Contains(err.Error(), "is locked") {
		t.Errorf("Reserve under someone else's lock: %v; want it to wait and say the file is locked", err)
	}
	if read(t, f.UID) != "" {
		t.Errorf("Reserve wrote without the lock: %q", read(t, f.UID))
	}
	unlock()
	if got, err := f.Reserve(context.Background(), 0, 65536); err != nil || got != 100000 {
		t.Errorf("Reserve after unlock = %d, %v", got, err)
	}
}

func TestParse(t *testing.T) {
	got := Parse([]byte("alice:100000:65536\n# comment\n\nroot:165536:65536\nbad\nbob:x:1\ncarol:1:0\ndave:5:5:5\n:1:1\n"))
	want := []Range{{"alice", 100000, 65536}, {"root", 165536, 65536}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse = %+v, want %+v", got, want)
	}
	r := Range{"x", 100000, 65536}
	if !r.covers(100000, 65536) || r.covers(100000, 65537) || r.covers(99999, 10) {
		t.Error("covers wrong")
	}
	if !r.overlaps(165535, 10) || r.overlaps(165536, 10) || r.overlaps(0, 100000) || !r.overlaps(0, 100001) {
		t.Error("overlaps wrong")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("root:100000:65536\nalice:165536:65536\n"))
	f.Add([]byte("debian:100000:65536\n# x\n:1:1\nbob:4294967295:1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, r := range Parse(data) {
			if r.Owner == "" || r.Count == 0 || r.Start > maxID || r.Count > maxID {
				t.Fatalf("returned %+v", r)
			}
		}
	})
}

// Whatever the files hold, a range Reserve returns is held by root in both
// and overlaps nobody else's.
func FuzzReserve(f *testing.F) {
	f.Add([]byte("debian:100000:65536\n"), []byte("root:165536:65536\n"))
	f.Add([]byte("root:100000:65536\nbob:120000:10\n"), []byte(""))
	f.Fuzz(func(t *testing.T, uid, gid []byte) {
		dir := t.TempDir()
		fs := Files{UID: filepath.Join(dir, "u"), GID: filepath.Join(dir, "g"), Lock: filepath.Join(dir, "l")}
		os.WriteFile(fs.UID, uid, 0o644)
		os.WriteFile(fs.GID, gid, 0o644)
		start, err := fs.Reserve(context.Background(), 0, 65536)
		if err != nil {
			return
		}
		for _, path := range []string{fs.UID, fs.GID} {
			m, _ := readMap(path)
			if !m.holds(uint64(start), 65536) {
				t.Fatalf("%s does not give root %d: %q", path, start, m.data)
			}
			if r, ok := m.taken(uint64(start), 65536); ok {
				t.Fatalf("%s: %d overlaps %+v", path, start, r)
			}
		}
	})
}

// Each namespace's range is one no line uses yet, root's included: two
// namespaces, or two agents on one machine, never share ids.
func TestAllocate(t *testing.T) {
	f := files(t, "debian:100000:65536\nroot:165536:65536\n", "root:165536:65536\nx:300000:10\n")
	var got []uint32
	for range 3 {
		start, err := f.Allocate(context.Background(), 65536)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, start)
	}
	if want := []uint32{231072, 300010, 365546}; !reflect.DeepEqual(got, want) {
		t.Errorf("Allocate gave %v, want %v", got, want)
	}
	wantUID := "debian:100000:65536\nroot:165536:65536\nroot:231072:65536\nroot:300010:65536\nroot:365546:65536\n"
	wantGID := "root:165536:65536\nx:300000:10\nroot:231072:65536\nroot:300010:65536\nroot:365546:65536\n"
	if u, g := read(t, f.UID), read(t, f.GID); u != wantUID || g != wantGID {
		t.Errorf("files:\nsubuid %q\nsubgid %q\nwant\nsubuid %q\nsubgid %q", u, g, wantUID, wantGID)
	}
	// What Allocate wrote, Reserve keeps.
	if again, err := f.Reserve(context.Background(), 300010, 65536); err != nil || again != 300010 || read(t, f.UID) != wantUID {
		t.Errorf("Reserve of an allocated range = %d, %v; files %q", again, err, read(t, f.UID))
	}
}

func TestAllocateConcurrent(t *testing.T) {
	f := files(t, "", "")
	var wg sync.WaitGroup
	got := make([]uint32, 8)
	errs := make([]error, 8)
	for i := range got {
		wg.Go(func() { got[i], errs[i] = f.Allocate(context.Background(), 65536) })
	}
	wg.Wait()
	seen := map[uint32]bool{}
	for i, s := range got {
		if errs[i] != nil || seen[s] || s < First {
			t.Errorf("Allocate %d = %d, %v (seen before: %v)", i, s, errs[i], seen[s])
		}
		seen[s] = true
	}
	if n := strings.Count(read(t, f.UID), "root:"); n != 8 {
		t.Errorf("subuid has %d ranges of root, want 8:\n%s", n, read(t, f.UID))
	}
}

func TestAllocateFull(t *testing.T) {
	f := files(t, "a:100000:4294867295\n", "")
	if _, err := f.Allocate(context.Background(), 65536); err == nil || !strings.Contains(err.Error(), "no 65536 free ids") {
		t.Errorf("Allocate on a full map: %v", err)
	}
	if read(t, f.UID) != "a:100000:4294867295\n" || read(t, f.GID) != "" {
		t.Error("a refused Allocate changed the files")
	}
}
