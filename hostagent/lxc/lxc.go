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
	"github.com/upscalehq/upscale/schedslice"

	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	golxc "github.com/lxc/go-lxc"
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
	// Binds are host directories mounted into the container before it
	// starts (volumes).
	Binds []Bind
}

// Bind mounts the host directory Source at Target in the container.
type Bind struct {
	Source   string // absolute on the host
	Target   string // absolute in the container; appspec.CheckVolumePath
	ReadOnly bool
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
	// shortSlice: ready containers' processes get schedslice.Short (quiet.go).
	shortSlice bool
	seccomp    string // LXC's default seccomp profile, "" when missing
	lock       *os.File

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
	if r.shortSlice = schedslice.Supported(); !r.shortSlice {
		r.cfg.Log.Warn("ready containers keep the default scheduler slice: a neighbour's deploy may delay their requests (custom slices need Linux 6.12 or later)")
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
