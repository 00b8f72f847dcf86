package lxc

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/upscalehq/upscale/hostagent/subids"
)

// otherRange reserves a second range for root, as the agent does for a
// second namespace, with a busybox image shifted to it.
func otherRange(t *testing.T) (uint32, string) {
	t.Helper()
	base, err := subids.System.Allocate(context.Background(), 65536)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := staticBusybox()
	if err != nil {
		t.Fatal(err)
	}
	img, err := buildImage(bb, filepath.Join(testBase, fmt.Sprintf("image-%d", base)), base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(img) })
	return base, img
}

// Two containers of one runtime in two id ranges (two namespaces): each
// runs as, and writes files owned by, ids of its own range only, and keeps
// its range when the runtime restarts. An escaped root of one is, on the
// host, a uid that cannot read the other's private files.
func TestIDRangesPerContainerRegression(t *testing.T) {
	e := newEnv(t, nil)
	a := testIDBase
	b, imgB := otherRange(t)
	if b == a || (b < a+65536 && a < b+65536) {
		t.Fatalf("ranges %d and %d overlap", a, b)
	}
	const cmd = `echo secret > /app/mine; exec sleep 1000`
	e.create(e.spec("ida", cmd)) // the runtime's range
	sb := e.spec("idb", cmd)
	sb.Image, sb.IDMapBase = imgB, b
	e.create(sb)
	ranges := map[string]uint32{"ida": a, "idb": b}
	for name := range ranges {
		e.start(name)
		eventually(t, 10*time.Second, name+" writes /app/mine", func() bool {
			_, err := os.Stat(e.upper(name, "app/mine"))
			return err == nil
		})
	}
	check := func(when string) {
		t.Helper()
		for name, base := range ranges {
			other := ranges["ida"] + ranges["idb"] - base
			got := e.get(name)
			if got.IDMapBase != base || got.State != "running" {
				t.Errorf("%s: %s: %+v, want running with ids from %d", when, name, got, base)
			}
			for _, pid := range append([]int{got.PID}, children(got.PID)...) {
				for _, uid := range procUIDs(t, pid) {
					if uid < int(base) || uid >= int(base)+65536 {
						t.Errorf("%s: %s: pid %d runs as host uid %d, outside %d-%d", when, name, pid, uid, base, base+65535)
					}
				}
			}
			// Everything in its writable layer, what its root wrote
			// included, belongs to its range and to none of the other's.
			err := filepath.WalkDir(e.upper(name, ""), func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				st, err := os.Lstat(p)
				if err != nil {
					return err
				}
				sys := st.Sys().(*syscall.Stat_t)
				for _, id := range []uint32{sys.Uid, sys.Gid} {
					if id < base || id >= base+65536 || (id >= other && id < other+65536) {
						t.Errorf("%s: %s: %s owned by %d:%d, want ids of %d-%d", when, name, p, sys.Uid, sys.Gid, base, base+65535)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			config, _ := os.ReadFile(filepath.Join(e.cfg.LXCPath, name, "config"))
			if want := fmt.Sprintf("lxc.idmap = u 0 %d 65536\n", base); !strings.Contains(string(config), want) {
				t.Errorf("%s: %s: config has no %q:\n%s", when, name, want, config)
			}
		}
	}
	check("after start")

	// Root of ida, escaped to the host, is host uid a: idb's private state
	// (its launcher holds its environment) is closed to it, as it is open
	// to idb's own root.
	private := e.upper("idb", launcherIn)
	for _, c := range []struct {
		uid     uint32
		allowed bool
	}{{a, false}, {b, true}} {
		cat := exec.Command("cat", private)
		cat.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: c.uid, Gid: c.uid}}
		out, err := cat.CombinedOutput()
		if (err == nil) != c.allowed {
			t.Errorf("host uid %d reading idb's %s: %v: %s (want allowed=%v)", c.uid, launcherIn, err, out, c.allowed)
		}
	}

	// The agent restarts: each adopted container keeps its range, and
	// starts again in it.
	if err := e.rt.Close(); err != nil {
		t.Fatal(err)
	}
	rt2, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.rt = rt2
	check("after a runtime restart")
	if err := rt2.Stop(context.Background(), "idb", 0); err != nil {
		t.Fatal(err)
	}
	os.Remove(e.upper("idb", "app/mine"))
	e.start("idb")
	eventually(t, 10*time.Second, "idb writes /app/mine again", func() bool {
		_, err := os.Stat(e.upper("idb", "app/mine"))
		return err == nil
	})
	check("after a stop and start by the new runtime")
}

// A container made before containers had ranges of their own has none in
// its record: it stays in the runtime's range.
func TestIDRangeOfOlderContainers(t *testing.T) {
	e := newEnv(t, nil)
	e.create(e.spec("old", "exec sleep 1000"))
	path := filepath.Join(e.cfg.LXCPath, "old", metaFile)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeMeta(data)
	if err != nil || m.IDMapBase != testIDBase {
		t.Fatalf("record %+v, %v; want idmap_base %d", m, err, testIDBase)
	}
	m.IDMapBase = 0
	if err := writeMeta(filepath.Dir(path), m); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(must(os.ReadFile(path))), "idmap_base") {
		t.Fatal("a zero range is still written")
	}
	e.rt.Close()
	rt2, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.rt = rt2
	e.start("old")
	if got := e.get("old"); got.IDMapBase != testIDBase || got.State != "running" {
		t.Errorf("older container: %+v, want running in %d", got, testIDBase)
	}
}
