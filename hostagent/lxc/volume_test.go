package lxc

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/upscalehq/upscale/gluster"
	"github.com/upscalehq/upscale/gluster/glustertest"
)

// A GlusterFS volume mounted on the host for one namespace's range and
// bound into its container: the app writes through it as its own uid, the
// file lands on the brick owned by that range, a read-only bind refuses
// writes, and a container of another namespace's range sees nothing of it:
// without the bind there is nothing at the path, and even bound (as a
// server mistake would) its root is refused entry.
func TestVolumeBindRegression(t *testing.T) {
	e := newEnv(t, nil)
	c := glustertest.Start(t, 1)
	ctx := context.Background()
	name := gluster.VolumeName("acme", "data")
	brick := filepath.Join(c.BrickRoot(0), name)
	if err := c.CLI(0).Create(ctx, gluster.Spec{Name: name, Bricks: []gluster.Brick{{Host: c.Hosts[0], Path: brick}}, Size: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(testBase, "vol-"+randHex(4))
	t.Cleanup(func() { glustertest.Unmount(t, mnt); os.Remove(mnt) })
	if err := gluster.Mount(ctx, c.Hosts, name, mnt, int(testIDBase), int(testIDBase)); err != nil {
		t.Fatal(err)
	}

	run := func(cname, cmd string, mod func(*Spec)) string {
		t.Helper()
		s := e.spec(cname, cmd+"; echo done")
		if mod != nil {
			mod(&s)
		}
		e.create(s)
		e.start(cname)
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if _, err := e.rt.Wait(wctx, cname); err != nil {
			t.Fatalf("%s: %v", cname, err)
		}
		lines, _ := e.rt.Logs(cname, 50)
		return strings.Join(lines, "\n")
	}
	bind := func(ro bool) func(*Spec) {
		return func(s *Spec) { s.Binds = []Bind{{Source: mnt, Target: "/app/data", ReadOnly: ro}} }
	}

	out := run("vola", "id -u; echo shared > /app/data/f && echo wrote", bind(false))
	if !strings.Contains(out, "wrote") {
		t.Fatalf("the owner's container could not write: %s", out)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(brick, "f"), &st); err != nil || st.Uid != testIDBase {
		t.Errorf("the file on the brick: uid %d (%v), want the range's root %d", st.Uid, err, testIDBase)
	}
	if out := run("volro", "cat /app/data/f; echo x > /app/data/g || echo refused", bind(true)); !strings.Contains(out, "shared") || !strings.Contains(out, "refused") {
		t.Errorf("read-only bind: %s", out)
	}
	if _, err := os.Stat(filepath.Join(brick, "g")); err == nil {
		t.Error("a read-only bind let a file through")
	}

	b, imgB := otherRange(t)
	other := func(s *Spec) { s.Image, s.IDMapBase = imgB, b }
	if out := run("volb", "ls /app/data 2>&1; cat /app/data/f 2>&1", other); strings.Contains(out, "shared") || !strings.Contains(out, "No such file") {
		t.Errorf("another namespace's container without the bind: %s", out)
	}
	out = run("volc", "ls /app/data 2>&1; cat /app/data/f 2>&1", func(s *Spec) { other(s); bind(false)(s) })
	if strings.Contains(out, "shared") || !strings.Contains(out, "Permission denied") {
		t.Errorf("another namespace's container with the bind: %s", out)
	}
}

func TestBindRejects(t *testing.T) {
	e := newEnv(t, nil)
	for _, b := range [][]Bind{
		{{Source: "/srv/v", Target: "/"}},
		{{Source: "/srv/v", Target: "/proc"}},
		{{Source: "/srv/v", Target: "/etc"}},
		{{Source: "/srv/v", Target: "/data/../etc"}},
		{{Source: "/srv/v", Target: "data"}},
		{{Source: "/srv/v", Target: "/app"}},
		{{Source: "srv/v", Target: "/data"}},
		{{Source: "/srv/a b", Target: "/data"}},
		{{Source: "/srv/v", Target: "/data"}, {Source: "/srv/w", Target: "/data"}},
	} {
		s := e.spec("bind", "true")
		s.Binds = b
		if _, err := e.rt.Create(context.Background(), s); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: %v", b, err)
		}
	}
	if list, _ := e.rt.List(); len(list) != 0 {
		t.Errorf("rejected creates left %+v", list)
	}
}
