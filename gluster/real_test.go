package gluster_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/upscalehq/upscale/gluster"
	"github.com/upscalehq/upscale/gluster/glustertest"
)

// A replica-2 volume on two real glusterd: created with its quota, read
// back healthy, mounted for a namespace's range, still written when one
// storage host dies (and reported so), then deleted and its host detached.
func TestVolumeLifecycle(t *testing.T) {
	c := glustertest.Pool(t, 2)
	ctx := context.Background()
	cli := c.CLI(0)
	name := gluster.VolumeName("acme", "data")
	bricks := []gluster.Brick{{Host: c.Hosts[0], Path: filepath.Join(c.BrickRoot(0), name)}, {Host: c.Hosts[1], Path: filepath.Join(c.BrickRoot(1), name)}}
	if err := cli.Create(ctx, gluster.Spec{Name: name, Bricks: bricks, Size: 16 << 20}); err != nil {
		t.Fatal(err)
	}
	err := cli.Create(ctx, gluster.Spec{Name: name, Bricks: bricks})
	if err == nil || err.Error() != "gluster volume create: Volume "+name+" already exists" {
		t.Errorf("creating it again: %v", err)
	}
	if _, err := cli.Info(ctx, name); err != nil {
		t.Fatalf("the first volume after a refused second create: %v", err)
	}

	v, err := c.CLI(1).Info(ctx, name) // any member answers for the pool
	if err != nil {
		t.Fatal(err)
	}
	if !v.Started || v.Replicas != 2 || len(v.Bricks) != 2 || v.Size != 16<<20 {
		t.Errorf("info: %+v", v)
	}
	for _, b := range v.Bricks {
		if !b.Online || b.Heal != 0 {
			t.Errorf("brick %s: online %v, heal %d; want online, nothing to heal", b.Brick, b.Online, b.Heal)
		}
	}
	list, err := cli.List(ctx)
	if err != nil || len(list) != 1 || list[0] != name {
		t.Errorf("list: %q, %v", list, err)
	}

	mnt := filepath.Join(c.Dir, "mnt")
	t.Cleanup(func() { glustertest.Unmount(t, mnt) })
	if err := gluster.Mount(ctx, c.Hosts, name, mnt, 100000, 100000); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(mnt, &st); err != nil || st.Uid != 100000 || st.Gid != 100000 || st.Mode&0o777 != 0o770 {
		t.Errorf("the volume's root: uid %d gid %d mode %o (%v); want 100000:100000 0770", st.Uid, st.Gid, st.Mode&0o777, err)
	}
	// Mounting again only gives it to the range again.
	if err := gluster.Mount(ctx, c.Hosts, name, mnt, 100000, 100000); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "before"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, b := range bricks {
		if got, err := os.ReadFile(filepath.Join(b.Path, "before")); err != nil || string(got) != "kept" {
			t.Errorf("brick %s holds %q, %v; want the file on every replica", b, got, err)
		}
	}

	c.Kill(1)
	if err := os.WriteFile(filepath.Join(mnt, "after"), []byte("still written"), 0o644); err != nil {
		t.Errorf("writing with one storage host dead: %v", err)
	}
	v, err = cli.Info(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Bricks[0].Online || v.Bricks[1].Online {
		t.Errorf("with host 2 dead: %+v", v.Bricks)
	}
	if v.Bricks[0].Heal < 1 {
		t.Errorf("brick 1 lists %d entries to heal onto its dead replica; want the file written since", v.Bricks[0].Heal)
	}

	// glusterd keeps a volume while one of its hosts is down: its words.
	glustertest.Unmount(t, mnt)
	if err := cli.Delete(ctx, name); err == nil || err.Error() != "gluster volume delete: Some of the peers are down" {
		t.Errorf("deleting with a host down: %v", err)
	}
}

func TestPoolAndRefusals(t *testing.T) {
	c := glustertest.Pool(t, 2)
	ctx := context.Background()
	cli := c.CLI(0)
	name := gluster.VolumeName("acme", "one")
	// One brick: a single machine's volume. Without quota, Info says 0.
	if err := cli.Create(ctx, gluster.Spec{Name: name, Bricks: []gluster.Brick{{Host: c.Hosts[0], Path: filepath.Join(c.BrickRoot(0), name)}}}); err != nil {
		t.Fatal(err)
	}
	v, err := cli.Info(ctx, name)
	if err != nil || v.Replicas != 1 || len(v.Bricks) != 1 || !v.Bricks[0].Online || v.Size != 0 {
		t.Errorf("a one-brick volume: %+v, %v", v, err)
	}
	if err := cli.Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Info(ctx, name); !errors.Is(err, gluster.ErrNotFound) {
		t.Errorf("info after delete: %v", err)
	}
	if err := cli.Delete(ctx, name); err != nil {
		t.Errorf("deleting it again: %v", err)
	}
	if err := cli.Detach(ctx, c.Hosts[1]); err != nil {
		t.Fatal(err)
	}
	if ps, err := cli.Peers(ctx); err != nil || len(ps) != 1 {
		t.Errorf("pool after detach: %+v, %v", ps, err)
	}
	// A brick on the host just detached: on one machine glusterd takes
	// its loopback address for its own and creates the volume, but cannot
	// start it. Create says why in glusterd's words and leaves no volume
	// behind, so it can simply be run again.
	err = cli.Create(ctx, gluster.Spec{Name: name, Bricks: []gluster.Brick{{Host: c.Hosts[1], Path: filepath.Join(c.BrickRoot(1), "x")}}})
	if err == nil || !strings.HasPrefix(err.Error(), "gluster volume ") || strings.Contains(err.Error(), "\n") {
		t.Errorf("a brick outside the pool: %v", err)
	}
	if _, err := cli.Info(ctx, name); !errors.Is(err, gluster.ErrNotFound) {
		t.Errorf("a volume that failed to start was kept: %v", err)
	}
	// A mount of a volume that does not exist fails, one line, and leaves
	// nothing mounted.
	mnt := filepath.Join(c.Dir, "nomnt")
	t.Cleanup(func() { glustertest.Unmount(t, mnt) })
	err = gluster.Mount(ctx, c.Hosts[:1], gluster.VolumeName("acme", "nope"), mnt, 100000, 100000)
	if err == nil || strings.Contains(err.Error(), "\n") {
		t.Errorf("mounting a missing volume: %v", err)
	}
	if ok, _ := gluster.Mounted(mnt); ok {
		t.Error("a failed mount stayed mounted")
	}
	if err := (gluster.CLI{Command: []string{"/nonexistent/gluster"}}).Probe(ctx, "10.0.0.1"); err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Errorf("no gluster binary: %v", err)
	}
}
