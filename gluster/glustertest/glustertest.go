// Package glustertest starts real glusterd daemons on this machine for
// tests, one per simulated storage host, as GlusterFS's own tests do
// (tests/cluster.rc): each binds its own loopback address. Each also runs
// in a mount namespace of its own with a private /run, /var/lib/glusterd
// and /var/log/glusterfs, so that their self-heal and quota daemons, pid
// files and sockets do not collide, and the gluster tools that talk to
// "the local glusterd" (heal info, quota list) find their host's.
package glustertest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/upscalehq/upscale/gluster"
)

// Require fails the test when glusterd cannot run here and UPSCALE_E2E=1
// says it must, and skips it otherwise.
func Require(t testing.TB) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root (glusterd, FUSE mounts)"
	} else if _, err := exec.LookPath("glusterd"); err != nil {
		why = "needs glusterd (make test-deps installs glusterfs-server)"
	} else if _, err := exec.LookPath("mount.glusterfs"); err != nil {
		why = "needs the FUSE client (glusterfs-client)"
	}
	if why == "" {
		return
	}
	if os.Getenv("UPSCALE_E2E") == "1" {
		t.Fatal(why + "; UPSCALE_E2E=1 forbids skipping")
	}
	t.Skip(why + "; UPSCALE_E2E=1 turns this skip into a failure")
}

// Cluster is n glusterd, not yet in one pool.
type Cluster struct {
	Dir   string   // under /tmp, named upst-gluster-* (scripts/clean-test.sh)
	Hosts []string // each glusterd's address
	pids  []int
}

// Start starts n glusterd and removes them, everything they started, and
// their files when the test ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	Require(t)
	dir, err := os.MkdirTemp("", "upst-gluster-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Dir: dir}
	t.Cleanup(func() {
		c.kill()
		os.RemoveAll(dir)
	})
	// A prefix of its own, so that parallel tests do not share addresses.
	prefix := fmt.Sprintf("127.%d.%d.", 200+rand.IntN(50), rand.IntN(250))
	for i := 1; i <= n; i++ {
		host := prefix + strconv.Itoa(i)
		hd := filepath.Join(dir, "host"+strconv.Itoa(i))
		for _, d := range []string{"lib", "log", "bricks"} {
			if err := os.MkdirAll(filepath.Join(hd, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		script := "mount -t tmpfs -o mode=0755 upst-run /run && " +
			"mount --bind " + filepath.Join(hd, "lib") + " /var/lib/glusterd && " +
			"mount --bind " + filepath.Join(hd, "log") + " /var/log/glusterfs && " +
			"exec glusterd -N --log-file=" + filepath.Join(hd, "log", "glusterd.log") +
			" --xlator-option management.transport.socket.bind-address=" + host
		cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		out, err := os.Create(filepath.Join(hd, "out"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		out.Close()
		go cmd.Wait()
		c.Hosts = append(c.Hosts, host)
		c.pids = append(c.pids, cmd.Process.Pid)
	}
	for i, h := range c.Hosts {
		if err := waitListening(h); err != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "host"+strconv.Itoa(i+1), "out"))
			t.Fatalf("glusterd on %s: %v; its output: %s", h, err, log)
		}
	}
	return c
}

func waitListening(host string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(host, "24007"), time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// CLI is a gluster command line talking to host i's glusterd (from 0).
func (c *Cluster) CLI(i int) gluster.CLI {
	return gluster.CLI{Command: []string{"nsenter", "--mount=/proc/" + strconv.Itoa(c.pids[i]) + "/ns/mnt", "gluster"}}
}

// BrickRoot is where host i keeps its bricks.
func (c *Cluster) BrickRoot(i int) string {
	return filepath.Join(c.Dir, "host"+strconv.Itoa(i+1), "bricks")
}

// Pool starts the cluster and probes every host from the first, waiting
// until all are connected.
func Pool(t testing.TB, n int) *Cluster {
	t.Helper()
	c := Start(t, n)
	ctx := context.Background()
	for _, h := range c.Hosts[1:] {
		if err := c.CLI(0).Probe(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ps, err := c.CLI(0).Peers(ctx)
		connected := 0
		for _, p := range ps {
			if p.Connected {
				connected++
			}
		}
		if err == nil && connected == n {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool of %d: %d connected after 30 s (%v)", n, connected, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Kill kills host i's glusterd and every process it started (bricks,
// self-heal and quota daemons), as a host that dies.
func (c *Cluster) Kill(i int) { KillNamespace(c.pids[i]) }

func (c *Cluster) kill() {
	for _, pid := range c.pids {
		KillNamespace(pid)
	}
}

// KillNamespace kills every process in pid's mount namespace, pid
// included: a test glusterd's namespace holds only what it started.
func KillNamespace(pid int) {
	ns, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/mnt")
	if err != nil {
		return
	}
	self, _ := os.Readlink("/proc/self/ns/mnt")
	if ns == self {
		return // never the tests' own namespace
	}
	for range 3 {
		entries, _ := os.ReadDir("/proc")
		found := false
		for _, e := range entries {
			p, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if l, err := os.Readlink("/proc/" + e.Name() + "/ns/mnt"); err == nil && l == ns {
				syscall.Kill(p, syscall.SIGKILL)
				found = true
			}
		}
		if !found {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Unmount is for a test's t.Cleanup: unmounts dir if mounted.
func Unmount(t testing.TB, dir string) {
	if ok, _ := gluster.Mounted(dir); ok {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("unmount %s: %v %s", dir, err, strings.TrimSpace(string(out)))
		}
	}
}
