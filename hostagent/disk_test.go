package hostagent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/upscalehq/upscale/agentapi"
)

func writeFile(t *testing.T, path string, size int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLayerUsageCountsBlocksEntriesAndLinksOnce(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "data", "big"), 1<<20)
	for i := range 100 {
		writeFile(t, filepath.Join(dir, "empty", strconv.Itoa(i)), 0)
	}
	for i := range 10 {
		if err := os.Link(filepath.Join(dir, "data", "big"), filepath.Join(dir, "data", "link"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	// A sparse file holds almost nothing on disk.
	f, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(1 << 40)
	f.Close()
	got, err := layerUsage(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	// 1 MiB once, 100 empty files at 4 KiB, a few directories and the
	// sparse file at 4 KiB each.
	least, most := int64(1<<20+100*minEntry), int64(1<<20+110*minEntry)
	if got < least || got > most {
		t.Errorf("usage %d, want %d to %d", got, least, most)
	}
	// Counting stops soon after the limit.
	if got, err := layerUsage(dir, 64<<10); err != nil || got <= 64<<10 || got > 64<<10+1<<20+minEntry {
		t.Errorf("usage with stop at 64K: %d, %v", got, err)
	}
	if _, err := layerUsage(filepath.Join(dir, "nope"), 0); err == nil {
		t.Error("a missing layer measured without an error")
	}
}

// An app container that writes past its limit is stopped, held (no crash
// restart), and listed with what it wrote; one within its limit, and one
// with no limit, go on.
func TestContainerOverItsDiskLimitIsStoppedForGood(t *testing.T) {
	rt := newFakeRuntime()
	rt.layers = map[string]string{}
	a := New(Config{Host: "h1", StateDir: t.TempDir(), Log: slog.New(slog.DiscardHandler)}, rt, nil, nil)
	ctx := context.Background()
	for _, name := range []string{"full-1", "fine-1", "free-1"} {
		rt.layers[name] = t.TempDir()
		writeFile(t, filepath.Join(rt.layers[name], "app", "release"), 256<<10) // its release: the base
		rt.Create(ctx, ContainerSpec{Name: name})
		rt.Start(ctx, name)
		limit := int64(1 << 20)
		if name == "free-1" {
			limit = 0
		}
		base := a.watchLayer(name, limit)
		a.saveMeta(name, meta{App: "acme/web", Release: 1, Disk: limit, DiskBase: base})
	}
	writeFile(t, filepath.Join(rt.layers["full-1"], "tmp", "junk"), 2<<20)
	writeFile(t, filepath.Join(rt.layers["fine-1"], "tmp", "junk"), 512<<10)
	writeFile(t, filepath.Join(rt.layers["free-1"], "tmp", "junk"), 2<<20)
	a.checkLayers(ctx)
	for name, want := range map[string]string{"full-1": "stopped", "fine-1": "running", "free-1": "running"} {
		if c, _ := rt.Get(name); c.State != want {
			t.Errorf("%s is %s, want %s", name, c.State, want)
		}
	}
	a.superviseOnce(ctx, time.Now())
	if rt.starts["full-1"] != 1 {
		t.Errorf("the container stopped for disk was restarted (%d starts)", rt.starts["full-1"])
	}
	l, err := a.list(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range l.(agentapi.ListReply).Containers {
		over := c.DiskOver >= 2<<20 && c.DiskOver < 3<<20 && c.Disk == 1<<20
		if (c.Name == "full-1") != over {
			t.Errorf("listed %s with disk %d, disk_over %d", c.Name, c.Disk, c.DiskOver)
		}
	}
	// A new agent process on the same state still knows it.
	b := New(Config{Host: "h1", StateDir: a.cfg.StateDir, Log: slog.New(slog.DiscardHandler)}, rt, nil, nil)
	b.adoptLayers()
	if over, limit := b.layerOver("full-1"); over < 2<<20 || limit != 1<<20 {
		t.Errorf("after an agent restart: over %d, limit %d", over, limit)
	}
	if _, limit := b.layerOver("fine-1"); limit != 1<<20 {
		t.Errorf("after an agent restart fine-1 is not watched (limit %d)", limit)
	}
}
