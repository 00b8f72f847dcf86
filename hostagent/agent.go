package hostagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/bus"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/runtimes"
)

// Runtime runs containers: LXC in upscale-agent, a fake in this package's tests.
type Runtime interface {
	Create(ctx context.Context, s ContainerSpec) (Container, error)
	Start(ctx context.Context, name string) error
	Stop(ctx context.Context, name string, grace time.Duration) error
	Destroy(ctx context.Context, name string) error
	Get(name string) (Container, error)
	List() ([]Container, error)
	Logs(name string, lines int) ([]string, error)
	Follow(ctx context.Context, name string, from int64, out func(line string)) error
	// LogLines and FollowLines are Logs and Follow with the time each
	// line was captured.
	LogLines(name string, lines int) ([]LogLine, error)
	FollowLines(ctx context.Context, name string, from int64, out func(LogLine)) error
	Wait(ctx context.Context, name string) (int, error)
	// AppDir is the host path of the container's /app, where a build
	// leaves its result.
	AppDir(name string) string
	// Layer is the host path of the container's writable layer.
	Layer(name string) string
}

// ContainerSpec is one container to create.
type ContainerSpec struct {
	Name    string
	Image   string // lower dir: the shifted runtime image
	AppDir  string // copied to /app
	Command string // run with /bin/sh -c in /app as the container's init
	Env     map[string]string
	Memory  int64
	CPU     float64
	PidsMax int64
	IDBase  uint32 // host uid/gid of its root, the start of its namespace's range; the image is shifted by it
	ShmSize int64  // bytes of /dev/shm
	Binds   []Bind // volumes, mounted on the host
}

// LogLine is one line of a container's output and when it was captured.
type LogLine struct {
	At   time.Time
	Text string
}

// Container is one container as the runtime sees it.
type Container struct {
	Name      string
	IP        netip.Addr
	State     string
	PID       int
	StartedAt time.Time
	ExitCode  int
	OOMKilled bool // its last run lost a process to the OOM killer
}

// Images builds and caches runtime images.
type Images interface {
	// Ensure returns r's image with its ids shifted by shift, the id
	// range of the containers that will run on it.
	Ensure(ctx context.Context, r runtimes.Runtime, shift uint32, progress func(line string)) (Image, error)
	List() ([]Image, error)
}

// Image is a built runtime image.
type Image struct {
	Runtime string
	Key     string
	Shifted string // the lower dir for containers
	Built   time.Time
}

// Bus is what the agent needs of the service bus.
type Bus interface {
	Handle(subject string, h bus.HandlerFunc) (func(), error)
	GetArtifact(ctx context.Context, name string, w io.Writer) (bus.Artifact, error)
}

// Config is an agent's setup.
type Config struct {
	Host     string // this host's name on the bus
	Address  string // this host's address, for hosts list
	StateDir string // releases cache and container metadata
	IDBase   uint32 // host uid/gid of a container's root when Ranges is nil
	// Ranges gives each namespace's containers an id range of their own;
	// nil puts every container in IDBase's.
	Ranges  NamespaceRanges
	PidsMax int64 // per container
	// Mounter mounts volumes (GlusterFS); nil refuses containers with
	// volumes.
	Mounter Mounter
	// OnRouter gets the router's address from every status call, to let
	// it reach the containers (agentapi.StatusRequest).
	OnRouter func(addr string)
	Log      *slog.Logger
}

// NamespaceRanges is where a namespace's containers get their ids:
// *IDRanges in upscale-agent.
type NamespaceRanges interface {
	For(ctx context.Context, namespace string) (uint32, error)
}

// Agent serves one host's containers on the bus.
type Agent struct {
	cfg    Config
	rt     Runtime
	images Images
	bus    Bus

	mu       sync.Mutex // guards release extraction
	volMu    sync.Mutex // between mounting a volume and recording who uses it
	releases map[string]*sync.Mutex
	layers   layers // writable layers with a limit (disk.go)
}

// New makes an agent; Run serves it.
func New(cfg Config, rt Runtime, images Images, b Bus) *Agent {
	return &Agent{cfg: cfg, rt: rt, images: images, bus: b, releases: map[string]*sync.Mutex{}}
}

// Run answers requests until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	handlers := map[string]bus.HandlerFunc{
		agentapi.MethodBuild:   a.build,
		agentapi.MethodStart:   a.start,
		agentapi.MethodStop:    a.stop,
		agentapi.MethodDestroy: a.destroy,
		agentapi.MethodList:    a.list,
		agentapi.MethodLogs:    a.logs,
		agentapi.MethodImages:  a.imageList,
		agentapi.MethodStatus:  a.status,
		agentapi.MethodFetch:   a.fetch,
		agentapi.MethodDrop:    a.drop,
		agentapi.MethodExec:    a.exec,
		agentapi.MethodMount:   a.mount,
		agentapi.MethodUnmount: a.unmount,
	}
	a.sweepLeftovers()
	a.adoptLayers()
	for method, h := range handlers {
		stop, err := a.bus.Handle(agentapi.Subject(a.cfg.Host, method), h)
		if err != nil {
			return fmt.Errorf("serving %s: %w", method, err)
		}
		defer stop()
	}
	a.cfg.Log.Info("agent serving", "host", a.cfg.Host)
	go a.diskLoop(ctx)
	a.superviseLoop(ctx)
	return nil
}

func (a *Agent) status(ctx context.Context, raw json.RawMessage, p func(string)) (any, error) {
	if req, err := decode[agentapi.StatusRequest](raw); err == nil && req.Router != "" && a.cfg.OnRouter != nil {
		a.cfg.OnRouter(req.Router)
	}
	b := agentapi.Beat{Info: Local(a.cfg.Address), At: time.Now().UTC()}
	b.Name = a.cfg.Host
	if l, err := a.list(ctx, raw, p); err == nil {
		b.List = l.(agentapi.ListReply).Containers
		b.Containers = len(b.List)
	}
	if imgs, err := a.images.List(); err == nil {
		for _, im := range imgs {
			b.Images = append(b.Images, agentapi.ImageInfo{Runtime: im.Runtime, Key: im.Key, Built: im.Built})
		}
	}
	return b, nil
}

func decode[T any](raw json.RawMessage) (T, error) {
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("bad request: %w", err)
	}
	return v, nil
}

// meta is what the agent remembers about a container beyond what the
// runtime knows, so that a restarted agent still knows whose it is.
type meta struct {
	App     string `json:"app"`
	Release int    `json:"release"`
	// Crash restarts (restart.go): how many since it last ran long
	// enough, the last exit status, and when the next restart is due.
	Restarts int       `json:"restarts,omitempty"`
	LastExit int       `json:"last_exit,omitempty"`
	NextAt   time.Time `json:"next_at,omitzero"`
	// Held is set when the server stopped it on purpose: no restart.
	Held bool `json:"held,omitempty"`
	// Its writable layer's limit, usage when it was made, and what it had
	// added when it was stopped for passing the limit (disk.go).
	Disk     int64 `json:"disk,omitempty"`
	DiskBase int64 `json:"disk_base,omitempty"`
	DiskOver int64 `json:"disk_over,omitempty"`
	// Volumes it has bound (GlusterFS names): a volume is unmounted when
	// no record names it any more.
	Volumes []string `json:"volumes,omitempty"`
}

func (a *Agent) metaPath(name string) string {
	return filepath.Join(a.cfg.StateDir, "containers", name+".json")
}

func (a *Agent) saveMeta(name string, m meta) error {
	b, _ := json.Marshal(m)
	if err := os.MkdirAll(filepath.Dir(a.metaPath(name)), 0o700); err != nil {
		return err
	}
	return os.WriteFile(a.metaPath(name), b, 0o600)
}

func (a *Agent) loadMeta(name string) meta {
	var m meta
	if b, err := os.ReadFile(a.metaPath(name)); err == nil {
		_ = json.Unmarshal(b, &m)
	}
	return m
}

func (a *Agent) start(ctx context.Context, raw json.RawMessage, progress func(string)) (any, error) {
	req, err := decode[agentapi.StartRequest](raw)
	if err != nil {
		return nil, err
	}
	begin := time.Now()
	spec, err := a.prepare(ctx, req.ReleaseContainer, progress)
	if err != nil {
		return nil, err
	}
	a.volMu.Lock()
	vols, binds, err := a.mountVolumes(ctx, req.ReleaseContainer, spec.IDBase)
	if err != nil {
		a.volMu.Unlock()
		return nil, err
	}
	spec.Binds = binds
	// Held until healthy: a crash before then fails the start instead of
	// being restarted.
	err = a.saveMeta(req.Name, meta{App: req.App, Release: req.Release, Held: true, Volumes: vols})
	a.volMu.Unlock()
	if err != nil {
		a.unmountUnused(vols, req.Name)
		return nil, fmt.Errorf("container %s: %w", req.Name, err)
	}
	c, err := a.rt.Create(ctx, spec)
	if err != nil {
		a.forget(req.Name)
		return nil, err
	}
	base := a.watchLayer(req.Name, req.Disk)
	fail := func(err error) (any, error) {
		a.remove(req.Name)
		return nil, err
	}
	if err := a.rt.Start(ctx, req.Name); err != nil {
		return fail(err)
	}
	addr := netip.AddrPortFrom(c.IP, agentapi.Port).String()
	started := time.Now()
	if err := a.waitHealthy(ctx, req, addr); err != nil {
		return fail(err)
	}
	// Started idle so as not to cost the host's other apps latency (see
	// lxc's Ready); serving now, it gets its full share.
	if r, ok := a.rt.(interface{ Ready(name string) error }); ok {
		if err := r.Ready(req.Name); err != nil {
			a.cfg.Log.Warn("container stays at idle CPU priority until its start bound", "container", req.Name, "err", err)
		}
	}
	if err := a.saveMeta(req.Name, meta{App: req.App, Release: req.Release, Disk: req.Disk, DiskBase: base, Volumes: vols}); err != nil {
		return fail(err)
	}
	return agentapi.StartReply{Addr: addr, Start: started.Sub(begin), Health: time.Since(started)}, nil
}

// tail is the last lines of a container's output, for error messages.
func (a *Agent) tail(name string) string {
	lines, err := a.rt.Logs(name, 20)
	if err != nil || len(lines) == 0 {
		return "; it printed nothing"
	}
	return "; its last output:\n" + strings.Join(lines, "\n")
}

func (a *Agent) remove(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.rt.Destroy(ctx, name); err != nil {
		a.cfg.Log.Warn("destroying container", "name", name, "err", err)
	}
	a.forget(name)
}

// forget drops a removed container's record, and unmounts the volumes
// it was the last to use.
func (a *Agent) forget(name string) {
	vols := a.loadMeta(name).Volumes
	a.volMu.Lock()
	os.Remove(a.metaPath(name))
	a.unmountUnused(vols, name)
	a.volMu.Unlock()
	a.unwatchLayer(name)
}

func (a *Agent) stop(ctx context.Context, raw json.RawMessage, _ func(string)) (any, error) {
	req, err := decode[agentapi.StopRequest](raw)
	if err != nil {
		return nil, err
	}
	if err := checkName(req.Name); err != nil {
		return nil, err
	}
	a.mu.Lock()
	m := a.loadMeta(req.Name)
	m.Held = true
	err = a.saveMeta(req.Name, m)
	a.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return struct{}{}, a.rt.Stop(ctx, req.Name, req.Grace)
}

func (a *Agent) destroy(ctx context.Context, raw json.RawMessage, _ func(string)) (any, error) {
	req, err := decode[agentapi.DestroyRequest](raw)
	if err != nil {
		return nil, err
	}
	if err := checkName(req.Name); err != nil {
		return nil, err
	}
	if err := a.rt.Destroy(ctx, req.Name); err != nil {
		return nil, err
	}
	a.forget(req.Name)
	return struct{}{}, nil
}

func (a *Agent) list(context.Context, json.RawMessage, func(string)) (any, error) {
	cs, err := a.rt.List()
	if err != nil {
		return nil, err
	}
	reply := agentapi.ListReply{Containers: []agentapi.ContainerInfo{}}
	for _, c := range cs {
		m := a.loadMeta(c.Name)
		info := agentapi.ContainerInfo{Name: c.Name, App: m.App, Release: m.Release, State: c.State, PID: c.PID, StartedAt: c.StartedAt,
			ExitCode: c.ExitCode, Restarts: m.Restarts, LastExit: m.LastExit, Disk: m.Disk, DiskOver: m.DiskOver}
		if c.IP.IsValid() {
			info.Addr = netip.AddrPortFrom(c.IP, agentapi.Port).String()
		}
		reply.Containers = append(reply.Containers, info)
	}
	return reply, nil
}

func (a *Agent) logs(ctx context.Context, raw json.RawMessage, progress func(string)) (any, error) {
	req, err := decode[agentapi.LogsRequest](raw)
	if err != nil {
		return nil, err
	}
	if err := checkName(req.Name); err != nil {
		return nil, err
	}
	if req.Stamped {
		return a.stampedLogs(ctx, req, progress)
	}
	lines, err := a.rt.Logs(req.Name, req.Lines)
	if err != nil {
		return nil, err
	}
	// Lines go as progress, each its own message: a reply is bounded, and
	// 10,000 long lines are not.
	for _, l := range lines {
		progress(l)
	}
	if !req.Follow {
		return struct{}{}, nil
	}
	// Follow until the caller goes away: its context ends ours.
	err = a.rt.Follow(ctx, req.Name, -1, progress)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		err = nil
	}
	return struct{}{}, err
}

// stampedLogs is logs with each line as agentapi.StampLine makes it, and an empty
// line between the last lines and what Follow adds.
func (a *Agent) stampedLogs(ctx context.Context, req agentapi.LogsRequest, progress func(string)) (any, error) {
	lines, err := a.rt.LogLines(req.Name, req.Lines)
	if err != nil {
		return nil, err
	}
	for _, l := range lines {
		progress(agentapi.StampLine(l.At, l.Text))
	}
	if !req.Follow {
		return struct{}{}, nil
	}
	progress("")
	err = a.rt.FollowLines(ctx, req.Name, -1, func(l LogLine) { progress(agentapi.StampLine(l.At, l.Text)) })
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		err = nil
	}
	return struct{}{}, err
}

func (a *Agent) imageList(context.Context, json.RawMessage, func(string)) (any, error) {
	imgs, err := a.images.List()
	if err != nil {
		return nil, err
	}
	reply := agentapi.ImagesReply{Images: []agentapi.ImageInfo{}}
	for _, im := range imgs {
		reply.Images = append(reply.Images, agentapi.ImageInfo{Runtime: im.Runtime, Key: im.Key, Built: im.Built})
	}
	return reply, nil
}

// prepare readies what any container of a release needs on this host:
// its namespace's id range, the runtime's image for that range, the
// unpacked artifact, and the env with the port.
func (a *Agent) prepare(ctx context.Context, c agentapi.ReleaseContainer, progress func(string)) (ContainerSpec, error) {
	if err := checkName(c.Name); err != nil {
		return ContainerSpec{}, err
	}
	base, err := a.idBase(ctx, c.App)
	if err != nil {
		return ContainerSpec{}, err
	}
	img, err := a.images.Ensure(ctx, c.Runtime, base, progress)
	if err != nil {
		return ContainerSpec{}, err
	}
	dir, err := a.release(ctx, c.Artifact, c.Digest, base)
	if err != nil {
		return ContainerSpec{}, err
	}
	env := map[string]string{}
	maps.Copy(env, c.Env)
	env[portEnv(c.Runtime)] = strconv.Itoa(agentapi.Port)
	return ContainerSpec{Name: c.Name, Image: img.Shifted, AppDir: dir, Command: c.Command,
		Env: env, Memory: c.Memory, CPU: c.CPU, PidsMax: a.cfg.PidsMax, IDBase: base, ShmSize: shmSize(c.Memory)}, nil
}

// idBase is the id range of the containers of app ("NS/APP"): its
// namespace's.
func (a *Agent) idBase(ctx context.Context, app string) (uint32, error) {
	if a.cfg.Ranges == nil {
		return a.cfg.IDBase, nil
	}
	parsed, err := names.ParseApp(app)
	if err != nil {
		return 0, err
	}
	return a.cfg.Ranges.For(ctx, parsed.Namespace)

}

// shmSize gives /dev/shm half the memory limit, at most 256 MiB: enough
// for what uses it (Chromium, multiprocessing, PostgreSQL in tests), and
// not the host's memory when there is no limit.
func shmSize(memory int64) int64 {
	const most = 256 << 20
	if memory <= 0 {
		return most
	}
	return max(min(memory/2, most), 1<<20)
}

func portEnv(r runtimes.Runtime) string {
	if r.PortEnv != "" {
		return r.PortEnv
	}
	return "PORT"
}

// checkName keeps container names from the bus out of paths they must not
// reach.
func checkName(name string) error {
	if name == "" || len(name) > 63 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" || name[0] == '-' {
		return fmt.Errorf("invalid container name %q", name)
	}
	return nil
}
