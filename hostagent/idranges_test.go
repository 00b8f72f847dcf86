package hostagent

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/bus"
	"github.com/upscalehq/upscale/hostagent/subids"
	"github.com/upscalehq/upscale/runtimes"
)

// testRanges is an agent's allocator over a /etc of its own holding subuid
// and subgid as given (a user at 100000, the runtime's range after it, as
// on a machine whose first user came before the agent).
func testRanges(t *testing.T, subuid string) (*IDRanges, subids.Files) {
	t.Helper()
	etc := t.TempDir()
	f := subids.Files{UID: filepath.Join(etc, "subuid"), GID: filepath.Join(etc, "subgid"), Lock: filepath.Join(etc, ".pwd.lock")}
	for _, p := range []string{f.UID, f.GID} {
		if err := os.WriteFile(p, []byte(subuid), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &IDRanges{Path: filepath.Join(t.TempDir(), IDRangesFile), Files: f}, f
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const machine = "debian:100000:65536\nroot:165536:65536\n"

// Each namespace gets a range nobody uses, once; it is recorded (0600)
// and a restarted agent finds the same ranges without taking new ids.
func TestIDRangesAllocateRecordRestart(t *testing.T) {
	r, f := testRanges(t, machine)
	ctx := context.Background()
	want := map[string]uint32{"acme": 231072, "globex": 296608}
	for _, ns := range []string{"acme", "globex", "acme", "globex"} {
		got, err := r.For(ctx, ns)
		if err != nil || got != want[ns] {
			t.Fatalf("For(%s) = %d, %v; want %d", ns, got, err, want[ns])
		}
	}
	files := machine + "root:231072:65536\nroot:296608:65536\n"
	for _, p := range []string{f.UID, f.GID} {
		if got := readString(t, p); got != files {
			t.Errorf("%s = %q, want %q", p, got, files)
		}
	}
	st, err := os.Stat(r.Path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("record: %v, %v; want mode 0600", st, err)
	}
	var rec idRangesRecord
	if err := json.Unmarshal([]byte(readString(t, r.Path)), &rec); err != nil || len(rec.Namespaces) != 2 ||
		rec.Namespaces["acme"] != 231072 || rec.Namespaces["globex"] != 296608 {
		t.Errorf("record %q: %+v, %v", readString(t, r.Path), rec, err)
	}

	// The agent restarts.
	again := &IDRanges{Path: r.Path, Files: f}
	for _, ns := range []string{"globex", "acme"} {
		if got, err := again.For(ctx, ns); err != nil || got != want[ns] {
			t.Errorf("after a restart For(%s) = %d, %v; want %d", ns, got, err, want[ns])
		}
	}
	if got := readString(t, f.UID); got != files {
		t.Errorf("a restart changed subuid: %q", got)
	}
	// A third namespace goes after all of them.
	if got, err := again.For(ctx, "initech"); err != nil || got != 362144 {
		t.Errorf("For(initech) = %d, %v; want 362144", got, err)
	}
}

// Someone removed root's lines (make test gives ranges back): a restarted
// agent takes its recorded ranges again rather than new ones. Someone gave
// one to a user: the namespace's containers are refused, with one line
// saying whose range it is, and nothing is rewritten.
func TestIDRangesRecordedRangeChecked(t *testing.T) {
	r, f := testRanges(t, machine)
	ctx := context.Background()
	if _, err := r.For(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{f.UID, f.GID} {
		os.WriteFile(p, []byte(machine), 0o644)
	}
	record := readString(t, r.Path)
	restarted := &IDRanges{Path: r.Path, Files: f}
	if got, err := restarted.For(ctx, "acme"); err != nil || got != 231072 {
		t.Fatalf("For(acme) = %d, %v; want the recorded 231072", got, err)
	}
	if got := readString(t, f.GID); got != machine+"root:231072:65536\n" {
		t.Errorf("subgid = %q; want the recorded range back for root", got)
	}

	taken := machine + "mallory:231072:65536\n"
	os.WriteFile(f.UID, []byte(taken), 0o644)
	restarted = &IDRanges{Path: r.Path, Files: f}
	_, err := restarted.For(ctx, "acme")
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "namespace acme's id range") ||
		!strings.Contains(err.Error(), "mallory's range 231072-296607") {
		t.Errorf("For(acme) with its range given to a user: %v", err)
	}
	if readString(t, r.Path) != record || readString(t, f.UID) != taken {
		t.Error("a refused range changed the record or subuid")
	}
}

// A record the agent cannot read is left alone, and every request for a
// range says which file is wrong.
func TestIDRangesBadRecord(t *testing.T) {
	for name, content := range map[string]string{
		"not JSON":     "acme=231072\n",
		"bad name":     `{"namespaces": {"Acme": 231072}}`,
		"host's ids":   `{"namespaces": {"acme": 1000}}`,
		"overlapping":  `{"namespaces": {"acme": 231072, "globex": 231073}}`,
		"extra field":  `{"namespaces": {}, "default": 1}`,
		"two records":  `{"namespaces": {}} {"namespaces": {}}`,
		"past 2^32":    `{"namespaces": {"acme": 4294967295}}`,
		"a negative":   `{"namespaces": {"acme": -1}}`,
		"not a number": `{"namespaces": {"acme": "231072"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			r, f := testRanges(t, machine)
			os.WriteFile(r.Path, []byte(content), 0o600)
			_, err := r.For(context.Background(), "initech")
			if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), r.Path) {
				t.Errorf("For with record %q: %v; want one line naming %s", content, err, r.Path)
			}
			if readString(t, r.Path) != content || readString(t, f.UID) != machine {
				t.Error("a bad record was rewritten, or ids taken")
			}
		})
	}
	r, _ := testRanges(t, machine)
	if _, err := r.For(context.Background(), "../etc"); err == nil {
		t.Error("For accepted an invalid namespace")
	}
}

// Requests for one new namespace arriving together get one range.
func TestIDRangesConcurrent(t *testing.T) {
	r, f := testRanges(t, machine)
	var wg sync.WaitGroup
	got := make([]uint32, 8)
	for i := range got {
		wg.Go(func() { got[i], _ = r.For(context.Background(), []string{"acme", "globex"}[i%2]) })
	}
	wg.Wait()
	for i, g := range got {
		if g != got[i%2] || g == 0 {
			t.Errorf("request %d got %d, want %d", i, g, got[i%2])
		}
	}
	if n := strings.Count(readString(t, f.UID), "root:"); n != 3 {
		t.Errorf("subuid has %d ranges of root, want 3:\n%s", n, readString(t, f.UID))
	}
}

func FuzzParseIDRanges(f *testing.F) {
	f.Add([]byte(`{"namespaces": {"acme": 231072, "globex": 296608}}`))
	f.Add([]byte("{\n  \"namespaces\": {\n    \"acme\": 165536\n  }\n}\n"))
	f.Add([]byte(`{"namespaces": {"acme": 231072, "globex": 231073}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ranges, err := ParseIDRanges(data, 65536)
		if err != nil {
			return
		}
		seen := map[uint32]string{}
		for ns, base := range ranges {
			if base < subids.First || uint64(base)+65536 > 1<<32-1 {
				t.Fatalf("%s: range %d accepted", ns, base)
			}
			for b, other := range seen {
				if b < base+65536 && base < b+65536 {
					t.Fatalf("%s and %s overlap: %d, %d", ns, other, base, b)
				}
			}
			seen[base] = ns
		}
	})
}

// fakeImages records the shifts asked for.
type fakeImages struct {
	mu     sync.Mutex
	dir    string
	shifts []uint32
}

func (f *fakeImages) Ensure(_ context.Context, r runtimes.Runtime, shift uint32, _ func(string)) (Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shifts = append(f.shifts, shift)
	return Image{Runtime: r.Name, Shifted: filepath.Join(f.dir, fmt.Sprintf("%s-%d", r.Name, shift))}, nil
}
func (f *fakeImages) List() ([]Image, error) { return nil, nil }

// fakeBus serves one artifact: a tree of one file owned, as the container
// saw it, by uid 33.
type fakeBus struct{ tarball []byte }

func (b *fakeBus) Handle(string, bus.HandlerFunc) (func(), error) { return func() {}, nil }
func (b *fakeBus) GetArtifact(_ context.Context, _ string, w io.Writer) (bus.Artifact, error) {
	_, err := w.Write(b.tarball)
	return bus.Artifact{SHA256: strings.Repeat("a", 64)}, err
}

func newFakeBus(t *testing.T) *fakeBus {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "app.py", Mode: 0o644, Size: 3, Uid: 33, Gid: 33, Typeflag: tar.TypeReg})
	tw.Write([]byte("hi\n"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &fakeBus{tarball: buf.Bytes()}
}

// Two namespaces' instances, one-off commands and builds on one host: each
// container gets its namespace's range, its image shifted for that range,
// and its release unpacked with that range's owners; a build's output is
// packed with its own range taken off.
func TestContainersGetTheirNamespacesRange(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to chown")
	}
	ranges, _ := testRanges(t, machine)
	rt := newFakeRuntime()
	imgs := &fakeImages{dir: t.TempDir()}
	state := t.TempDir()
	a := New(Config{Host: "h1", StateDir: state, IDBase: 165536, Ranges: ranges, Log: slog.New(slog.DiscardHandler)}, rt, imgs, newFakeBus(t))
	ctx := context.Background()
	digest := strings.Repeat("a", 64)
	rc := func(name, app string) agentapi.ReleaseContainer {
		return agentapi.ReleaseContainer{Name: name, App: app, Release: 1, Runtime: runtimes.Runtime{Name: "python"}, Artifact: "a", Digest: digest, Command: "true"}
	}
	for _, c := range []agentapi.ReleaseContainer{rc("exec-acme-web-1", "acme/web"), rc("exec-globex-api-1", "globex/api"), rc("exec-acme-api-1", "acme/api")} {
		raw, _ := json.Marshal(agentapi.ExecRequest{ReleaseContainer: c, Timeout: time.Minute})
		if _, err := a.exec(ctx, raw, func(string) {}); err != nil {
			t.Fatalf("exec %s: %v", c.Name, err)
		}
	}
	want := map[string]uint32{"exec-acme-web-1": 231072, "exec-globex-api-1": 296608, "exec-acme-api-1": 231072}
	for name, base := range want {
		s := rt.specs[name]
		if s.IDBase != base {
			t.Errorf("%s: created with ids from %d, want %d", name, s.IDBase, base)
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(s.AppDir, "app.py"), &st); err != nil || st.Uid != base+33 {
			t.Errorf("%s: release file owned by %d, %v; want %d", name, st.Uid, err, base+33)
		}
	}
	if rt.specs["exec-acme-web-1"].AppDir == rt.specs["exec-globex-api-1"].AppDir {
		t.Error("two namespaces share one unpacked release")
	}
	if got := imgs.shifts; len(got) != 3 || got[0] != 231072 || got[1] != 296608 || got[2] != 231072 {
		t.Errorf("images asked for shifts %v", got)
	}

	// A build of globex's: its output, owned by ids of globex's range,
	// packs with the container's own owners.
	out := t.TempDir()
	os.WriteFile(filepath.Join(out, "built"), []byte("x"), 0o644)
	os.Lchown(filepath.Join(out, "built"), 296608+33, 296608+33)
	rt.appDir = out
	raw, _ := json.Marshal(agentapi.BuildRequest{App: "globex/api", Release: 2, Runtime: runtimes.Runtime{Name: "python"}, Source: "src", Steps: []string{"true"}})
	got, err := a.build(ctx, raw, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(state, "outbox", got.(agentapi.BuildReply).Outbox))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(mustGunzip(t, must(io.ReadAll(f))))
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatal("no built file in the build's output")
		}
		if hdr.Name == "built" {
			if hdr.Uid != 33 {
				t.Errorf("built is owned by %d in the archive, want 33", hdr.Uid)
			}
			break
		}
	}
	for name, s := range rt.specs {
		if strings.HasPrefix(name, "build-") && s.IDBase != 296608 {
			t.Errorf("build container %s has ids from %d, want globex's 296608", name, s.IDBase)
		}
		if strings.HasPrefix(name, "build-") && s.Env["UPSCALE_APP"] != "globex/api" {
			t.Errorf("build container %s has UPSCALE_APP=%q, want globex/api", name, s.Env["UPSCALE_APP"])
		}
	}

	// Not NS/APP: refused before anything is made.
	raw, _ = json.Marshal(agentapi.ExecRequest{ReleaseContainer: rc("exec-x-1", "nonamespace"), Timeout: time.Minute})
	if _, err := a.exec(ctx, raw, func(string) {}); err == nil || !strings.Contains(err.Error(), "NAMESPACE/APP") {
		t.Errorf("exec for app %q: %v", "nonamespace", err)
	}
	if _, ok := rt.specs["exec-x-1"]; ok {
		t.Error("a container was made for an invalid app")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
