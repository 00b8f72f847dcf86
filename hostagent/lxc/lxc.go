// Package lxc runs app instances as unprivileged LXC containers for
// upscale-agent.
//
// Each container lives in LXCPath/NAME: LXC's config, our record
// (upscale.json: address, image, id range, start time) and an overlay whose
// lower dir is a shared runtime image shifted to the container's id range
// and whose upper dir is the container's own writable layer. The
// container's root is the first host uid of its range (Spec.IDMapBase, the
// runtime's IDMapBase when none is given); no container process runs as
// host root.
//
// The container's init is a small launcher shell script (see launcher.go)
// that runs the app as its child, forwards TERM to it, appends its output to
// /.upscale/app.log and records its exit status. Everything the runtime
// needs survives its own restart on disk: a new Runtime on the same LXCPath
// adopts running containers with their addresses.
//
// Containers are started with the lxc-start binary, and observed and
// stopped through go-lxc over LXC's command socket. That socket is per
// network namespace: use a Runtime from the network namespace it was
// created in.
package lxc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	golxc "github.com/lxc/go-lxc"
	"golang.org/x/sys/unix"
)

// Errors callers can test with errors.Is.
var (
	ErrNotFound  = errors.New("no such container")
	ErrExists    = errors.New("container already exists")
	ErrNoAddress = errors.New("no free address in the subnet")
	ErrClosed    = errors.New("runtime closed")
)

// Config describes the host side shared by every container of a Runtime.
type Config struct {
	LXCPath   string       // e.g. /var/lib/upscale-agent/containers
	Bridge    string       // created if missing, with Gateway address; <= 15 chars
	Subnet    netip.Prefix // IPv4; Gateway = first address; containers get static addresses from it
	IDMapBase uint32       // host uid/gid of the containers' root; 0 = the one recorded in LXCPath, else a free range (see reserveIDs)
	IDMapSize uint32       // default 65536
	DNS       []string     // default: the host's non-loopback nameservers, else 1.1.1.1
	NAT       bool         // masquerade Subnet so apps reach the internet
	// EgressAllow opens private destinations to the containers (they
	// reach only the public internet and their DNS servers otherwise).
	EgressAllow []Egress
	// IngressAllow are the routers on other machines: the only sources,
	// besides this host, that may open connections to the containers.
	IngressAllow []netip.Prefix
	LogLimit     int64        // bytes of app output kept per container; default 1 MiB
	Log          *slog.Logger // warnings; nil = none
}

// Spec describes one container.
type Spec struct {
	Name  string // ^[a-z][a-z0-9-]{0,62}$
	Image string // lower dir: a rootfs with every uid/gid shifted by the container's IDMapBase
	// IDMapBase is the host uid and gid of this container's root, the
	// start of IDMapSize ids held for root in /etc/subuid and /etc/subgid;
	// 0 = the runtime's.
	IDMapBase uint32
	AppDir    string            // copied to /app, owned by the container's root; "" = empty /app
	Command   string            // run as `cd /app && /bin/sh -c COMMAND` under the launcher
	Env       map[string]string // names ^[A-Za-z_][A-Za-z0-9_]*$, values without NUL
	Memory    int64             // bytes, 0 = no limit
	PidsMax   int64             // 0 = no limit
	CPU       float64           // cores of CPU time per second (a CFS quota), 0 = no limit
	ShmSize   int64             // bytes of /dev/shm; 0 = defaultShm
	Hostname  string            // default Name
}

// Container is the observed state of one container.
type Container struct {
	Name      string     `json:"name"`
	IP        netip.Addr `json:"ip"`
	State     string     `json:"state"`      // "running", "stopped", "starting", "stopping", ...
	PID       int        `json:"pid"`        // host pid of the container's init (the launcher, the app's parent), 0 when stopped
	StartedAt time.Time  `json:"started_at"` // last start, zero if never started
	ExitCode  int        `json:"exit_code"`  // last exit status when stopped, -1 unknown
	IDMapBase uint32     `json:"idmap_base"` // host uid and gid of its root
	// OOMKilled: when stopped, the kernel's OOM killer killed a process
	// of its last run (over its memory limit, as the launcher saw it).
	OOMKilled bool `json:"oom_killed,omitempty"`
}

var (
	nameRE     = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	envNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	hostnameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$`)
	bridgeRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$`)
)

func validName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("invalid container name %q (want %s)", name, nameRE)
	}
	return nil
}

const (
	metaFile     = "upscale.json"
	logBaseFile  = "logbase"
	lxcLogFile   = "lxc.log"
	lockFile     = ".upscale.lock"
	defaultLimit = 1 << 20
	// Docker's default: an unsized tmpfs may take half the host's memory
	// (charged to the container, but up to a limit it may not have).
	defaultShm = 64 << 20
	// How long LXC may take to tear a container down once its init is gone.
	teardownTimeout = 15 * time.Second
	pollInterval    = 10 * time.Millisecond
)

// Runtime manages the containers under one LXCPath. Only one Runtime may
// own an LXCPath at a time (a lock file enforces it); containers keep
// running when it is closed or its process dies, and the next Runtime on
// the same LXCPath adopts them.
type Runtime struct {
	cfg      Config
	gateway  netip.Addr
	lxcStart string
	cgroup2  bool
	swapKey  bool // a swap limit key exists, so Memory can be a hard limit
	// idleStart: containers start with cpu.idle set, until Ready (quiet.go).
	idleStart bool
	seccomp   string // LXC's default seccomp profile, "" when missing
	lock      *os.File

	mu     sync.Mutex
	ctrs   map[string]*ctr
	cursor netip.Addr // last address handed out; allocation continues after it
	closed bool
	// ingress are the routers allowed since New (AllowIngress).
	ingress []netip.Prefix

	quit chan struct{}
	done chan struct{}

	// stateHook replaces liblxc's view of a container's state in unit
	// tests that run without root.
	stateHook func(*ctr) string
}

// ctr is one container. op serializes lifecycle operations; mu guards the
// fields below it; logMu guards the log file and its base offset.
type ctr struct {
	name   string
	dir    string
	idBase uint32 // host uid/gid of its root, fixed at Create

	op sync.Mutex

	mu    sync.Mutex
	meta  meta
	ready bool // false while Create is still writing it
	gone  bool // destroyed or runtime closed: no new liblxc handle
	lx    *golxc.Container

	logMu      sync.Mutex
	logF       *os.File
	logBase    int64  // bytes dropped from the front of the log so far
	logMidLine bool   // the kept log starts inside a line (see capLog)
	marks      []mark // capture times, ascending (logs.go)
}

// New prepares the host (bridge, NAT, subordinate ids) and adopts the
// containers already under cfg.LXCPath.
func New(cfg Config) (*Runtime, error) {
	if err := (&cfg).normalize(); err != nil {
		return nil, err
	}
	r := &Runtime{
		cfg:     cfg,
		gateway: cfg.Subnet.Addr().Next(),
		ctrs:    map[string]*ctr{},
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	var err error
	if r.lxcStart, err = exec.LookPath("lxc-start"); err != nil {
		return nil, fmt.Errorf("lxc: %w (install the lxc package)", err)
	}
	if err := os.MkdirAll(cfg.LXCPath, 0o711); err != nil {
		return nil, fmt.Errorf("lxc: %w", err)
	}
	if r.lock, err = lockDir(cfg.LXCPath); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			r.lock.Close()
		}
	}()
	if err := r.reserveIDs(); err != nil {
		return nil, err
	}
	if err := checkTraversable(cfg.LXCPath, r.cfg.IDMapBase); err != nil {
		return nil, fmt.Errorf("lxc: lxcpath: %w", err)
	}
	r.detectCgroups()
	if why := r.detectIdle(); why != "" {
		r.cfg.Log.Warn("containers start at the ordinary CPU priority: a starting app may cost its neighbours latency", "why", why)
	} else {
		r.idleStart = true
	}
	if _, err := os.Stat("/usr/share/lxc/config/common.seccomp"); err == nil {
		r.seccomp = "/usr/share/lxc/config/common.seccomp"
	}
	if err := ensureBridge(cfg.Bridge, r.gateway, cfg.Subnet.Bits()); err != nil {
		return nil, fmt.Errorf("lxc: bridge %s: %w", cfg.Bridge, err)
	}
	if err := r.load(); err != nil {
		return nil, err
	}
	var ports []string
	for _, c := range r.ctrs {
		ports = append(ports, r.port(c))
	}
	if err := ensureFirewall(r.cfg, ports); err != nil {
		return nil, fmt.Errorf("lxc: firewall: %w", err)
	}
	for _, c := range r.ctrs {
		// One an agent left idle when it died waiting for its app.
		r.ready(c)
	}
	ok = true
	go r.capLoop()
	return r, nil
}

func (cfg *Config) normalize() error {
	if !filepath.IsAbs(cfg.LXCPath) {
		return fmt.Errorf("lxc: LXCPath %q must be absolute", cfg.LXCPath)
	}
	cfg.LXCPath = filepath.Clean(cfg.LXCPath)
	if strings.ContainsAny(cfg.LXCPath, ":,\n\x00") {
		return fmt.Errorf("lxc: LXCPath %q contains ':', ',' or a control character", cfg.LXCPath)
	}
	if !bridgeRE.MatchString(cfg.Bridge) {
		return fmt.Errorf("lxc: invalid bridge name %q", cfg.Bridge)
	}
	if !cfg.Subnet.IsValid() || !cfg.Subnet.Addr().Is4() || cfg.Subnet.Bits() < 8 || cfg.Subnet.Bits() > 29 {
		return fmt.Errorf("lxc: subnet %v must be IPv4 between /8 and /29", cfg.Subnet)
	}
	cfg.Subnet = cfg.Subnet.Masked()
	if cfg.IDMapSize == 0 {
		cfg.IDMapSize = 65536
	}
	if cfg.IDMapSize < 65536 || uint64(cfg.IDMapBase)+uint64(cfg.IDMapSize) > 1<<32-1 {
		return fmt.Errorf("lxc: id map %d+%d: need at least 65536 ids below 2^32", cfg.IDMapBase, cfg.IDMapSize)
	}
	if cfg.LogLimit == 0 {
		cfg.LogLimit = defaultLimit
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.LogLimit < 4096 {
		return fmt.Errorf("lxc: LogLimit %d too small (min 4096)", cfg.LogLimit)
	}
	if len(cfg.DNS) == 0 {
		data, _ := os.ReadFile("/etc/resolv.conf")
		cfg.DNS = parseResolvConf(data)
		if len(cfg.DNS) == 0 {
			cfg.DNS = []string{"1.1.1.1"}
		}
	}
	for _, d := range cfg.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			return fmt.Errorf("lxc: DNS server %q: %w", d, err)
		}
	}
	return nil
}

// detectCgroups picks the limit keys LXC applies. On a hybrid host (v1
// controllers plus an empty unified tree) memory and pids live on v1.
func (r *Runtime) detectCgroups() {
	if data, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		r.cgroup2 = true
		if !strings.Contains(string(data), "memory") {
			return
		}
		// The root cgroup has no memory.swap.max; look at our own.
		self, _ := os.ReadFile("/proc/self/cgroup")
		for _, line := range strings.Split(string(self), "\n") {
			if p, ok := strings.CutPrefix(line, "0::"); ok {
				_, err := os.Stat(filepath.Join("/sys/fs/cgroup", filepath.Clean("/"+p), "memory.swap.max"))
				r.swapKey = err == nil
			}
		}
		return
	}
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	r.swapKey = err == nil
}

// lockDir makes sure no other Runtime manages the same LXCPath: two would
// hand out the same addresses.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lxc: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lxc: %s is in use by another runtime: %w", dir, err)
	}
	return f, nil
}

// checkTraversable fails early when the container's root (host uid base)
// could not reach dir: LXC mounts the overlay inside the user namespace, so
// a 0700 parent (t.TempDir, a umask 077 /var/lib) makes every start fail
// with a confusing "Permission denied" deep in LXC's log.
func checkTraversable(dir string, base uint32) error {
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		sys, _ := st.Sys().(*syscall.Stat_t)
		mode := st.Mode().Perm()
		switch {
		case mode&0o001 != 0:
		case sys != nil && sys.Uid == base && mode&0o100 != 0:
		case sys != nil && sys.Gid == base && mode&0o010 != 0:
		default:
			return fmt.Errorf("%s (mode %o) cannot be traversed by uid %d, the containers' root: chmod o+x it", d, mode, base)
		}
		if d == "/" || d == "." {
			return nil
		}
	}
}

// load adopts the containers a previous Runtime left under LXCPath.
func (r *Runtime) load() error {
	entries, err := os.ReadDir(r.cfg.LXCPath)
	if err != nil {
		return fmt.Errorf("lxc: %w", err)
	}
	r.cursor = r.gateway
	for _, e := range entries {
		if !e.IsDir() || validName(e.Name()) != nil {
			continue
		}
		dir, err := r.dir(e.Name())
		if err != nil {
			return err
		}
		data, err := os.ReadFile(filepath.Join(dir, metaFile))
		if errors.Is(err, fs.ErrNotExist) {
			continue // not ours, or a Create that died before reserving
		}
		if err != nil {
			return fmt.Errorf("lxc: %w", err)
		}
		m, err := decodeMeta(data)
		if err != nil || m.Name != e.Name() {
			return fmt.Errorf("lxc: %s: bad %s: %v", dir, metaFile, err)
		}
		c := &ctr{name: m.Name, dir: dir, idBase: m.IDMapBase, meta: m, ready: true}
		if c.idBase == 0 {
			// Made before containers had ranges of their own: in the one
			// range every container had then, the recorded one.
			c.idBase = r.cfg.IDMapBase
		}
		if b, err := os.ReadFile(filepath.Join(dir, logBaseFile)); err == nil {
			c.logBase, c.logMidLine = parseLogBase(b)
		}
		// Open the log now so the capper covers containers that kept
		// running while no agent was there.
		if root, err := os.OpenRoot(filepath.Join(dir, "upper")); err == nil {
			c.logF, _ = openLog(root, false, int(c.idBase))
			root.Close()
		}
		r.ctrs[m.Name] = c
		if r.cfg.Subnet.Contains(m.IP) && r.cursor.Less(m.IP) {
			r.cursor = m.IP
		}
	}
	return nil
}

// Close stops the log capping and releases the LXCPath. Containers keep
// running.
func (r *Runtime) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	ctrs := r.ctrs
	r.mu.Unlock()
	close(r.quit)
	<-r.done
	for _, c := range ctrs {
		c.release()
	}
	return r.lock.Close()
}

// release frees the liblxc handle and the log file. go-lxc makes calls on
// a released handle harmless (they see a stopped container), so operations
// racing with Destroy or Close need no further locking.
func (c *ctr) release() {
	c.mu.Lock()
	c.gone = true
	if c.lx != nil {
		c.lx.Release()
		c.lx = nil
	}
	c.mu.Unlock()
	c.logMu.Lock()
	if c.logF != nil {
		c.logF.Close()
		c.logF = nil
	}
	c.logMu.Unlock()
}

// dir is the container's directory, confined to LXCPath.
func (r *Runtime) dir(name string) (string, error) {
	if err := validName(name); err != nil {
		return "", fmt.Errorf("lxc: %w", err)
	}
	d := filepath.Join(r.cfg.LXCPath, name)
	rel, err := filepath.Rel(r.cfg.LXCPath, d)
	if err != nil || rel != name {
		return "", fmt.Errorf("lxc: %q escapes %s", name, r.cfg.LXCPath)
	}
	return d, nil
}

// AppDir is the host path of the container's /app (in its upper dir), where
// a build container leaves its result. "" for an invalid name.
func (r *Runtime) AppDir(name string) string {
	if l := r.Layer(name); l != "" {
		return filepath.Join(l, "app")
	}
	return ""
}

// Layer is the host path of the container's writable layer (its overlay's
// upper dir). "" for an invalid name.
func (r *Runtime) Layer(name string) string {
	d, err := r.dir(name)
	if err != nil {
		return ""
	}
	return filepath.Join(d, "upper")
}

func (r *Runtime) get(name string) (*ctr, error) {
	if err := validName(name); err != nil {
		return nil, fmt.Errorf("lxc: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	c := r.ctrs[name]
	if c == nil {
		return nil, fmt.Errorf("lxc: %s: %w", name, ErrNotFound)
	}
	c.mu.Lock()
	ready := c.ready
	c.mu.Unlock()
	if !ready {
		return nil, fmt.Errorf("lxc: %s: %w", name, ErrNotFound)
	}
	return c, nil
}

func (s *Spec) validate(cfg Config) error {
	if err := validName(s.Name); err != nil {
		return err
	}
	if s.Hostname == "" {
		s.Hostname = s.Name
	}
	if !hostnameRE.MatchString(s.Hostname) {
		return fmt.Errorf("invalid hostname %q", s.Hostname)
	}
	// The image ends up in "overlay:LOWER:UPPER" and in overlayfs options.
	if !filepath.IsAbs(s.Image) || strings.ContainsAny(s.Image, ":,\n\x00") {
		return fmt.Errorf("image %q must be an absolute path without ':' or ','", s.Image)
	}
	s.Image = filepath.Clean(s.Image)
	if st, err := os.Stat(s.Image); err != nil || !st.IsDir() {
		return fmt.Errorf("image %s is not a directory: %v", s.Image, err)
	}
	if s.IDMapBase == 0 {
		s.IDMapBase = cfg.IDMapBase
	}
	if s.IDMapBase < 1<<16 || uint64(s.IDMapBase)+uint64(cfg.IDMapSize) > 1<<32-1 {
		// Below 65536 a container's ids would be the host's users and
		// groups.
		return fmt.Errorf("id range %d+%d: want a start from 65536 and an end below 2^32", s.IDMapBase, cfg.IDMapSize)
	}
	// An image shifted for another range is closed to this one (images
	// are 0750 root:SHIFT), so this also catches a mismatched image.
	if err := checkTraversable(s.Image, s.IDMapBase); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if err := checkTraversable(cfg.LXCPath, s.IDMapBase); err != nil {
		return fmt.Errorf("lxcpath: %w", err)
	}
	if _, err := os.Lstat(filepath.Join(s.Image, "bin", "sh")); err != nil {
		return fmt.Errorf("image %s has no /bin/sh for the launcher", s.Image)
	}
	if s.AppDir != "" {
		if st, err := os.Stat(s.AppDir); err != nil || !st.IsDir() {
			return fmt.Errorf("app dir %s is not a directory: %v", s.AppDir, err)
		}
	}
	if strings.TrimSpace(s.Command) == "" || strings.ContainsRune(s.Command, 0) {
		return errors.New("command must be non-empty and contain no NUL")
	}
	for k, v := range s.Env {
		if !envNameRE.MatchString(k) {
			return fmt.Errorf("invalid environment variable name %q", k)
		}
		if strings.ContainsRune(v, 0) {
			return fmt.Errorf("environment variable %s contains NUL", k)
		}
	}
	if s.Memory < 0 || (s.Memory > 0 && s.Memory < 4<<20) {
		return fmt.Errorf("memory limit %d: want 0 or at least 4 MiB", s.Memory)
	}
	if s.PidsMax < 0 {
		return fmt.Errorf("pids limit %d is negative", s.PidsMax)
	}
	if s.ShmSize < 0 || (s.ShmSize > 0 && s.ShmSize < 1<<20) {
		return fmt.Errorf("/dev/shm size %d: want 0 (the default) or at least 1 MiB", s.ShmSize)
	}
	if s.CPU < 0 || s.CPU > 1024 || s.CPU != s.CPU {
		return fmt.Errorf("cpu limit %v: want 0 (none) up to 1024 cores", s.CPU)
	}
	return nil
}

// Create writes everything the container needs (address, LXC config,
// writable layer with /etc/hosts, /etc/resolv.conf, /app and the launcher)
// without starting it.
func (r *Runtime) Create(ctx context.Context, s Spec) (Container, error) {
	if err := s.validate(r.cfg); err != nil {
		return Container{}, fmt.Errorf("lxc: create: %w", err)
	}
	dir, err := r.dir(s.Name)
	if err != nil {
		return Container{}, err
	}
	c, err := r.reserve(s, dir)
	if err != nil {
		return Container{}, err
	}
	err = r.setPort(true, r.port(c))
	if err == nil {
		err = r.build(ctx, c, s)
	}
	if err != nil {
		r.setPort(false, r.port(c))
		r.mu.Lock()
		delete(r.ctrs, s.Name)
		r.mu.Unlock()
		c.release()
		os.RemoveAll(dir)
		return Container{}, fmt.Errorf("lxc: create %s: %w", s.Name, err)
	}
	c.mu.Lock()
	c.ready = true
	c.mu.Unlock()
	return r.status(c), nil
}

// reserve claims the name and an address and records them on disk before
// anything else, so a crash mid-Create cannot lead to a duplicate address.
func (r *Runtime) reserve(s Spec, dir string) (*ctr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if _, ok := r.ctrs[s.Name]; ok {
		return nil, fmt.Errorf("lxc: %s: %w", s.Name, ErrExists)
	}
	ip, err := r.allocIP()
	if err != nil {
		return nil, fmt.Errorf("lxc: %s: %w", s.Name, err)
	}
	if err := os.Mkdir(dir, 0o711); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("lxc: %s: %w (directory %s)", s.Name, ErrExists, dir)
		}
		return nil, fmt.Errorf("lxc: %w", err)
	}
	c := &ctr{name: s.Name, dir: dir, idBase: s.IDMapBase, meta: meta{
		Name: s.Name, IP: ip, Image: s.Image, Hostname: s.Hostname, IDMapBase: s.IDMapBase,
		CreatedAt: time.Now().UTC(), ExitCode: -1,
	}}
	if err := writeMeta(dir, c.meta); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	r.ctrs[s.Name] = c
	r.cursor = ip
	return c, nil
}

// allocIP returns the next free address after the last one handed out,
// wrapping around: a just-freed address is reused as late as possible, so
// a router still pointing at a destroyed container does not reach another
// app's new one.
func (r *Runtime) allocIP() (netip.Addr, error) {
	used := map[netip.Addr]bool{r.gateway: true}
	for _, c := range r.ctrs {
		used[c.meta.IP] = true
	}
	first, last := r.gateway.Next(), lastHost(r.cfg.Subnet)
	a := r.cursor.Next()
	if !r.cfg.Subnet.Contains(a) || last.Less(a) || a.Less(first) {
		a = first
	}
	for start := a; ; {
		if !used[a] {
			return a, nil
		}
		if a = a.Next(); last.Less(a) {
			a = first
		}
		if a == start {
			return netip.Addr{}, ErrNoAddress
		}
	}
}

// lastHost is the address below the broadcast address.
func lastHost(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= 1<<(32-p.Bits()) - 1
	v--
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func writeMeta(dir string, m meta) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, metaFile), append(data, '\n'), 0o600)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// build lays out the container directory:
//
//	NAME/upscale.json  our record (address, image)
//	NAME/config        LXC config
//	NAME/upper         overlay upper dir = the container's writable layer
//	NAME/work          overlay work dir (LXC derives it from upper's parent)
//	NAME/lxc.log       LXC's errors from the last start
func (r *Runtime) build(ctx context.Context, c *ctr, s Spec) error {
	id := int(c.idBase)
	upper := filepath.Join(c.dir, "upper")
	dirs := []struct {
		path string
		mode os.FileMode
	}{
		{upper, 0o755},
		{filepath.Join(c.dir, "work"), 0o700},
		{filepath.Join(upper, "etc"), 0o755},
		{filepath.Join(upper, stateDirIn), 0o700},
		{filepath.Join(upper, appDirIn), 0o755},
	}
	for _, d := range dirs {
		if err := os.Mkdir(d.path, d.mode); err != nil {
			return err
		}
		// Mkdir honours the umask; the modes above are what the container sees.
		if err := os.Chmod(d.path, d.mode); err != nil {
			return err
		}
		if err := os.Lchown(d.path, id, id); err != nil {
			return err
		}
	}
	hosts := fmt.Sprintf("127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n", s.Hostname)
	var resolv strings.Builder
	for _, d := range r.cfg.DNS {
		fmt.Fprintf(&resolv, "nameserver %s\n", d)
	}
	l := launcher{StateDir: stateDirIn, AppDir: appDirIn, Env: appEnv(s.Env), Command: s.Command}
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{filepath.Join(upper, "etc", "hosts"), []byte(hosts), 0o644},
		{filepath.Join(upper, "etc", "resolv.conf"), []byte(resolv.String()), 0o644},
		// 0700: it holds the app's environment, secrets included.
		{filepath.Join(upper, launcherIn), l.script(), 0o700},
		{filepath.Join(upper, stateDirIn, logName), nil, 0o600},
	}
	for _, f := range files {
		if err := writeOwned(f.path, f.data, f.mode, id); err != nil {
			return err
		}
	}
	if s.AppDir != "" {
		if err := copyTree(ctx, s.AppDir, filepath.Join(upper, appDirIn), id); err != nil {
			return fmt.Errorf("copy app: %w", err)
		}
	}
	lx, err := golxc.NewContainer(c.name, r.cfg.LXCPath)
	if err != nil {
		return fmt.Errorf("liblxc: %w", err)
	}
	for _, kv := range r.lxcConfig(c, s, upper) {
		if err := lx.SetConfigItem(kv[0], kv[1]); err != nil {
			lx.Release()
			return fmt.Errorf("lxc config %s = %q: %w", kv[0], kv[1], err)
		}
	}
	if err := lx.SaveConfigFile(filepath.Join(c.dir, "config")); err != nil {
		lx.Release()
		return fmt.Errorf("save lxc config: %w", err)
	}
	c.mu.Lock()
	c.lx = lx
	c.mu.Unlock()
	return nil
}

func writeOwned(path string, data []byte, mode os.FileMode, id int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Chown(id, id)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

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
	}
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

// copyTree copies src into dst (which exists) without following symlinks,
// giving every entry to the container's root.
func copyTree(ctx context.Context, src, dst string, id int) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil || rel == "." {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode().Perm()
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, mode); err != nil {
				return err
			}
			if err := os.Chmod(target, mode); err != nil {
				return err
			}
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		case d.Type().IsRegular():
			if err := copyFile(path, target, mode); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unsupported file type %v", path, d.Type())
		}
		return os.Lchown(target, id, id)
	})
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	// *os.File to *os.File: copy_file_range, reflinks where the fs can.
	_, err = out.ReadFrom(in)
	if err == nil {
		err = out.Chmod(mode)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// lxc returns the liblxc handle, opening it on first use (adopted
// containers).
func (c *ctr) lxc(lxcpath string) (*golxc.Container, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lx != nil {
		return c.lx, nil
	}
	if c.gone {
		return nil, fmt.Errorf("lxc: %s: %w", c.name, ErrNotFound)
	}
	lx, err := golxc.NewContainer(c.name, lxcpath)
	if err != nil {
		return nil, fmt.Errorf("lxc: %s: liblxc: %w", c.name, err)
	}
	c.lx = lx
	return lx, nil
}

func (r *Runtime) state(c *ctr) (string, error) {
	if r.stateHook != nil {
		return r.stateHook(c), nil
	}
	lx, err := c.lxc(r.cfg.LXCPath)
	if err != nil {
		return "", err
	}
	return strings.ToLower(lx.State().String()), nil
}

// Start runs the container's init and returns once LXC reports it
// running; it does not wait for the app to be ready. Starting a running
// container is a no-op.
//
// lxc-start is exec'd rather than called through go-lxc's Start: liblxc
// forks the calling process to become the container's monitor, which lives
// as long as the container. Forked from the agent, every monitor would keep
// a copy-on-write snapshot of the agent's whole Go heap (and its signal
// handlers and threads' locks); exec'd, it is a small C process.
func (r *Runtime) Start(ctx context.Context, name string) error {
	c, err := r.get(name)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	lx, err := c.lxc(r.cfg.LXCPath)
	if err != nil {
		return err
	}
	switch lx.State() {
	case golxc.STOPPED:
	case golxc.STOPPING:
		// An app that just exited: LXC is still tearing the old run down.
		if err := r.waitStopped(c, lx); err != nil {
			return err
		}
	default:
		return nil
	}
	root, err := os.OpenRoot(filepath.Join(c.dir, "upper"))
	if err != nil {
		return fmt.Errorf("lxc: start %s: %w", name, err)
	}
	defer root.Close()
	for _, f := range []string{exitName, oomName} {
		if err := root.Remove(filepath.Join(stateDirIn[1:], f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("lxc: start %s: %w", name, err)
		}
	}
	if err := r.reopenLog(c, root); err != nil {
		return fmt.Errorf("lxc: start %s: log: %w", name, err)
	}
	logPath := filepath.Join(c.dir, lxcLogFile)
	os.Remove(logPath)
	cmd := exec.CommandContext(ctx, r.lxcStart, "-n", name, "-P", r.cfg.LXCPath, "-o", logPath, "-l", "ERROR")
	// The monitor inherits this environment; nothing of the agent's belongs
	// there.
	cmd.Env = []string{"PATH=" + defaultPath}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// lxc-start daemonizes after the container runs; the monitor closes the
	// inherited output, but do not let a stray holder stall us.
	cmd.WaitDelay = 2 * time.Second
	started := time.Now().UTC()
	if err := cmd.Run(); err != nil {
		detail := strings.TrimSpace(out.String())
		if b, _ := os.ReadFile(logPath); len(b) > 0 {
			detail = strings.TrimSpace(string(tailBytes(b, 2048)))
		}
		return fmt.Errorf("lxc: start %s: %w: %s", name, err, detail)
	}
	c.mu.Lock()
	c.meta.StartedAt = started
	c.meta.ExitCode = -1
	m := c.meta
	c.mu.Unlock()
	if err := writeMeta(c.dir, m); err != nil {
		return fmt.Errorf("lxc: start %s: %w", name, err)
	}
	r.readyLater(c, started)
	return nil
}

func tailBytes(b []byte, n int) []byte {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return b
}

// Stop sends SIGTERM to the container's init (the launcher forwards it to
// the app) and SIGKILLs the container if it is still running after grace.
// A cancelled ctx ends the grace early. Stopping a stopped container is a
// no-op.
func (r *Runtime) Stop(ctx context.Context, name string, grace time.Duration) error {
	c, err := r.get(name)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	return r.stopCtr(ctx, c, grace)
}

func (r *Runtime) stopCtr(ctx context.Context, c *ctr, grace time.Duration) error {
	lx, err := c.lxc(r.cfg.LXCPath)
	if err != nil {
		return err
	}
	if !lx.Running() {
		return nil
	}
	exited := false
	if grace > 0 {
		pidfd, err := lx.InitPidFd()
		if err == nil {
			defer pidfd.Close()
			err = unix.PidfdSendSignal(int(pidfd.Fd()), unix.SIGTERM, nil, 0)
		}
		if err != nil {
			if !lx.Running() {
				return r.waitStopped(c, lx)
			}
			return fmt.Errorf("lxc: stop %s: SIGTERM: %w", c.name, err)
		}
		gctx, cancel := context.WithTimeout(ctx, grace)
		exited = waitPidfd(gctx, pidfd) == nil
		cancel()
	}
	if !exited {
		if err := lx.Stop(); err != nil && lx.Running() {
			return fmt.Errorf("lxc: stop %s: %w", c.name, err)
		}
		// Killed before the launcher could record anything.
		c.mu.Lock()
		c.meta.ExitCode = 128 + int(syscall.SIGKILL)
		m := c.meta
		c.mu.Unlock()
		if err := writeMeta(c.dir, m); err != nil {
			return fmt.Errorf("lxc: stop %s: %w", c.name, err)
		}
	}
	return r.waitStopped(c, lx)
}

// waitPidfd returns nil once the process behind pidfd has exited.
func waitPidfd(ctx context.Context, pidfd *os.File) error {
	fds := []unix.PollFd{{Fd: int32(pidfd.Fd()), Events: unix.POLLIN}}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		wait := 100 * time.Millisecond
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			wait = max(time.Until(dl), time.Millisecond)
		}
		n, err := unix.Poll(fds, int(wait/time.Millisecond))
		if err != nil && err != unix.EINTR {
			return err
		}
		if n > 0 {
			return nil
		}
	}
}

// waitStopped waits for LXC to finish tearing the container down after its
// init is gone (network, cgroups, mounts).
func (r *Runtime) waitStopped(c *ctr, lx *golxc.Container) error {
	deadline := time.Now().Add(teardownTimeout)
	for lx.State() != golxc.STOPPED {
		if time.Now().After(deadline) {
			return fmt.Errorf("lxc: %s still %s after %v", c.name, lx.State(), teardownTimeout)
		}
		time.Sleep(pollInterval)
	}
	return nil
}

// Wait blocks until the container stops and returns its exit status (-1
// when unknown). It returns at once for a stopped container.
func (r *Runtime) Wait(ctx context.Context, name string) (int, error) {
	c, err := r.get(name)
	if err != nil {
		return -1, err
	}
	lx, err := c.lxc(r.cfg.LXCPath)
	if err != nil {
		return -1, err
	}
	for lx.Running() {
		pidfd, err := lx.InitPidFd()
		if err != nil {
			// Between states (starting, stopping): poll.
			select {
			case <-ctx.Done():
				return -1, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		err = waitPidfd(ctx, pidfd)
		pidfd.Close()
		if err != nil {
			return -1, err
		}
		if err := r.waitStopped(c, lx); err != nil {
			return -1, err
		}
	}
	return r.status(c).ExitCode, nil
}

// Destroy stops the container if needed (SIGKILL, no grace) and removes
// its directory, which frees its address.
func (r *Runtime) Destroy(ctx context.Context, name string) error {
	c, err := r.get(name)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	if err := r.stopCtr(ctx, c, 0); err != nil {
		return err
	}
	if err := r.setPort(false, r.port(c)); err != nil {
		return fmt.Errorf("lxc: destroy %s: %w", name, err)
	}
	c.release()
	// Everything but our record first: if removal fails halfway the
	// address stays reserved and Destroy can be retried.
	entries, err := os.ReadDir(c.dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("lxc: destroy %s: %w", name, err)
	}
	for _, e := range entries {
		if e.Name() == metaFile {
			continue
		}
		if err := os.RemoveAll(filepath.Join(c.dir, e.Name())); err != nil {
			return fmt.Errorf("lxc: destroy %s: %w", name, err)
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("lxc: destroy %s: %w", name, err)
	}
	// liblxc leaves its per-container lock file behind.
	os.Remove(filepath.Join("/run/lxc/lock", r.cfg.LXCPath, "."+name))
	r.mu.Lock()
	delete(r.ctrs, name)
	r.mu.Unlock()
	return nil
}

// Get returns the container's current state.
func (r *Runtime) Get(name string) (Container, error) {
	c, err := r.get(name)
	if err != nil {
		return Container{}, err
	}
	return r.status(c), nil
}

// List returns every container under LXCPath, sorted by name.
func (r *Runtime) List() ([]Container, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	var ctrs []*ctr
	for _, c := range r.ctrs {
		c.mu.Lock()
		if c.ready {
			ctrs = append(ctrs, c)
		}
		c.mu.Unlock()
	}
	r.mu.Unlock()
	sort.Slice(ctrs, func(i, j int) bool { return ctrs[i].name < ctrs[j].name })
	out := make([]Container, 0, len(ctrs))
	for _, c := range ctrs {
		out = append(out, r.status(c))
	}
	return out, nil
}

func (r *Runtime) status(c *ctr) Container {
	c.mu.Lock()
	m := c.meta
	c.mu.Unlock()
	out := Container{Name: c.name, IP: m.IP, State: "unknown", ExitCode: -1, IDMapBase: c.idBase}
	lx, err := c.lxc(r.cfg.LXCPath)
	if err != nil {
		return out
	}
	st := lx.State()
	out.State = strings.ToLower(st.String())
	out.StartedAt = m.StartedAt
	if st == golxc.STOPPED {
		out.ExitCode = r.exitCode(c, m)
		out.OOMKilled = r.oomKilled(c)
		return out
	}
	if pid := lx.InitPid(); pid > 0 {
		out.PID = pid
	}
	return out
}

// exitCode prefers what the launcher wrote.
func (r *Runtime) exitCode(c *ctr, m meta) int {
	if code, ok := parseExitCode(r.stateFile(c, exitName)); ok {
		return code
	}
	return m.ExitCode
}

// oomKilled says whether the launcher found OOM kills in its cgroup. The
// container can write the file too: it can only make its own failure read
// as a lack of memory.
func (r *Runtime) oomKilled(c *ctr) bool {
	n, ok := parseCount(r.stateFile(c, oomName))
	return ok && n > 0
}

// stateFile reads a small file the launcher wrote. It is in the
// container's writable layer, so it is read through an os.Root (no symlink
// leads out), only if regular, and bounded; nil when unreadable.
func (r *Runtime) stateFile(c *ctr, name string) []byte {
	root, err := os.OpenRoot(filepath.Join(c.dir, "upper"))
	if err != nil {
		return nil
	}
	defer root.Close()
	f, err := root.OpenFile(filepath.Join(stateDirIn[1:], name), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil
	}
	buf := make([]byte, 24)
	n, _ := f.Read(buf)
	return buf[:n]
}
