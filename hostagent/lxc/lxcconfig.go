// The LXC config of a container: rootfs, id map, network, mounts, limits.

package lxc

import (
	"fmt"
	"strconv"
	"strings"
)

// lxcConfig is the container's LXC configuration, in the order LXC applies
// it (memory.limit_in_bytes must precede memory.memsw.limit_in_bytes).
func (r *Runtime) lxcConfig(c *ctr, s Spec, upper string) [][2]string {
	base := strconv.FormatUint(uint64(c.idBase), 10)
	size := strconv.FormatUint(uint64(r.cfg.IDMapSize), 10)
	shm := s.ShmSize
	if shm == 0 {
		shm = defaultShm
	}
	kv := [][2]string{
		{"lxc.uts.name", s.Hostname},
		{"lxc.rootfs.path", "overlay:" + s.Image + ":" + upper},
		{"lxc.idmap", "u 0 " + base + " " + size},
		{"lxc.idmap", "g 0 " + base + " " + size},
		{"lxc.init.cmd", launcherIn},
		{"lxc.init.cwd", "/"},
		// cgroup:mixed:force because the launcher, unlike systemd, mounts
		// nothing, and runtimes (JVM, Node, Go) size themselves from the
		// limits they find under /sys/fs/cgroup.
		{"lxc.mount.auto", "proc:mixed sys:mixed cgroup:mixed:force"},
		{"lxc.mount.entry", fmt.Sprintf("tmpfs dev/shm tmpfs rw,nosuid,nodev,size=%dk,create=dir 0 0", shm>>10)},
		{"lxc.autodev", "1"},
	}
	for _, b := range s.Binds {
		// create=dir makes the mount point in the writable layer; LXC
		// refuses a target that leads out of the rootfs through a link.
		opts := "bind,create=dir"
		if b.ReadOnly {
			opts += ",ro"
		}
		kv = append(kv, [2]string{"lxc.mount.entry", b.Source + " " + strings.TrimPrefix(b.Target, "/") + " none " + opts + " 0 0"})
	}
	kv = append(kv, [][2]string{
		// No console and no ttys: nothing reads them, and each costs time at
		// start. The launcher sends all output to the log file.
		{"lxc.console.path", "none"},
		{"lxc.tty.max", "0"},
		{"lxc.pty.max", "64"},
		// What an app needs (Docker's default set) without NET_RAW and
		// MKNOD: no raw or packet sockets (spoofed frames, ARP), no
		// NET_ADMIN (addresses, routes), nothing else.
		{"lxc.cap.keep", "chown dac_override fowner fsetid kill setgid setuid setfcap setpcap net_bind_service sys_chroot audit_write"},
		// The launcher traps TERM and forwards it to the app; LXC's default
		// halt signal (SIGPWR) would be ignored by the shell.
		{"lxc.signal.halt", "SIGTERM"},
		{"lxc.signal.stop", "SIGKILL"},
		{"lxc.net.0.type", "veth"},
		{"lxc.net.0.link", r.cfg.Bridge},
		{"lxc.net.0.veth.pair", vethName(r.cfg.Bridge, r.cfg.LXCPath, c.name)},
		{"lxc.net.0.flags", "up"},
		{"lxc.net.0.name", "eth0"},
		{"lxc.net.0.hwaddr", macFor(c.meta.IP)},
		{"lxc.net.0.ipv4.address", fmt.Sprintf("%s/%d", c.meta.IP, r.cfg.Subnet.Bits())},
		{"lxc.net.0.ipv4.gateway", r.gateway.String()},
	}...)
	if r.seccomp != "" {
		kv = append(kv, [2]string{"lxc.seccomp.profile", r.seccomp})
	}
	cg := "lxc.cgroup."
	if r.cgroup2 {
		cg = "lxc.cgroup2."
	}
	// Device access: only the nodes LXC's autodev provides (as in LXC's
	// common.conf).
	kv = append(kv, [2]string{cg + "devices.deny", "a"})
	for _, d := range []string{"c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 136:* rwm"} {
		kv = append(kv, [2]string{cg + "devices.allow", d})
	}
	if s.Memory > 0 {
		m := strconv.FormatInt(s.Memory, 10)
		if r.cgroup2 {
			kv = append(kv, [2]string{cg + "memory.max", m})
			if r.swapKey {
				kv = append(kv, [2]string{cg + "memory.swap.max", "0"})
			}
		} else {
			kv = append(kv, [2]string{cg + "memory.limit_in_bytes", m})
			// Same value with swap: over the limit means OOM-killed, not
			// swapping the host to death.
			if r.swapKey {
				kv = append(kv, [2]string{cg + "memory.memsw.limit_in_bytes", m})
			}
		}
	}
	if r.idleStart {
		kv = append(kv, [2]string{cg + "cpu.idle", "1"})
	}
	if s.PidsMax > 0 {
		kv = append(kv, [2]string{cg + "pids.max", strconv.FormatInt(s.PidsMax, 10)})
	}
	if s.CPU > 0 {
		// A quota per 100 ms period: 0.5 is 50 ms of CPU each 100 ms.
		quota := strconv.FormatInt(max(int64(s.CPU*cpuPeriod), 1000), 10)
		if r.cgroup2 {
			kv = append(kv, [2]string{cg + "cpu.max", quota + " " + strconv.Itoa(cpuPeriod)})
		} else {
			kv = append(kv, [2]string{cg + "cpu.cfs_period_us", strconv.Itoa(cpuPeriod)}, [2]string{cg + "cpu.cfs_quota_us", quota})
		}
	}
	return kv
}

// cpuPeriod is the CFS period in microseconds.
const cpuPeriod = 100000
