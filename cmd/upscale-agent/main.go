// Command upscale-agent runs on every host: it builds runtime images,
// runs builds and app instances as unprivileged LXC containers, and answers
// the Upscale server over the service bus. It is the only cgo binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/upscalehq/upscale/bus"
	"github.com/upscalehq/upscale/gluster"
	"github.com/upscalehq/upscale/hostagent"
	"github.com/upscalehq/upscale/hostagent/images"
	"github.com/upscalehq/upscale/hostagent/lxc"
	"github.com/upscalehq/upscale/hostagent/subids"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/runtimes"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("upscale-agent stopped", "err", err)
		if errors.Is(err, bus.ErrRevoked) {
			// Its supervisor (systemd, the server, the install script's
			// loop) does not restart an agent that exits 3.
			os.Exit(3)
		}
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	var (
		credentials = flag.String("credentials", "", "bus credentials file written by the server (required)")
		name        = flag.String("name", "", "this host's name on the bus (default: from the credentials)")
		state       = flag.String("state", "/var/lib/upscale-agent", "state directory: containers, releases, build outbox")
		lxcpath     = flag.String("lxcpath", "", "LXC container directory (default STATE/containers)")
		imageDir    = flag.String("images", images.DefaultCacheDir, "runtime image cache, shared by every agent on this machine")
		mirror      = flag.String("mirror", "", "Debian mirror for images (default: the one in this machine's apt sources)")
		bridge      = flag.String("bridge", "upsbr0", "bridge the containers attach to (created if missing)")
		subnet      = flag.String("subnet", "10.77.0.0/24", "container subnet on the bridge; the host routes it")
		nat         = flag.Bool("nat", true, "masquerade the container subnet so apps reach the internet")
		address     = flag.String("address", "", "this host's address as other hosts reach it (default: its first non-loopback IPv4)")
		teardown    = flag.Bool("teardown", false, "destroy every container of this agent and its bridge and NAT rule, then exit (uninstall, tests)")
		egress      []lxc.Egress
		ingress     []netip.Prefix
	)
	flag.Func("egress-allow", "a private destination containers may reach, CIDR[:PORT] (e.g. a database at 10.0.5.7:5432); repeat for more", func(s string) error {
		e, err := lxc.ParseEgress(s)
		egress = append(egress, e)
		return err
	})
	flag.Func("ingress-allow", "a router on another machine that may open connections to the containers, CIDR or address (the server's addresses from the credentials are always allowed); repeat for more", func(s string) error {
		p, err := parsePrefix(s)
		ingress = append(ingress, p)
		return err
	})
	flag.Parse()
	if *lxcpath == "" {
		*lxcpath = filepath.Join(*state, "containers")
	}
	prefix, err := netip.ParsePrefix(*subnet)
	if err != nil {
		return fmt.Errorf("--subnet: %w", err)
	}
	lxcCfg := lxc.Config{LXCPath: *lxcpath, Bridge: *bridge, Subnet: prefix, NAT: *nat, EgressAllow: egress, Log: log}
	if *teardown {
		return teardownAll(lxcCfg, log)
	}
	if *credentials == "" {
		return errors.New("--credentials is required")
	}
	creds, err := bus.ReadCredentials(*credentials)
	if err != nil {
		return err
	}
	lxcCfg.IngressAllow = append(ingress, serverAddrs(creds.URL)...)
	host := *name
	if host == "" {
		host = creds.Agent
	}
	if err := names.Check("host", host); err != nil {
		return err
	}
	if *address == "" {
		*address = primaryAddress()
	}
	if err := hostagent.PrepareStateDir(*state); err != nil {
		return err
	}
	if err := os.MkdirAll(*lxcpath, 0o711); err != nil {
		return err
	}
	rt, err := lxc.New(lxcCfg)
	if err != nil {
		return err
	}
	defer rt.Close()
	log.Info("id range reserved", "containers_root", rt.IDMapBase())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	conn, err := bus.Connect(ctx, creds, "upscale-agent-"+host, bus.WithLogger(log))
	if err != nil {
		return fmt.Errorf("connecting to the bus: %w", err)
	}
	defer conn.Close()
	// Revoked credentials (hosts remove) end the connection for good.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-conn.Done()
		cancel()
	}()
	// Each namespace's containers run in an id range of its own; the
	// runtime's range is left to containers made before that.
	ranges := &hostagent.IDRanges{Path: filepath.Join(*lxcpath, hostagent.IDRangesFile), Files: subids.System}
	a := hostagent.New(hostagent.Config{
		Host: host, Address: *address, StateDir: *state, IDBase: rt.IDMapBase(), Ranges: ranges, PidsMax: 512, Log: log,
		Mounter: glusterMounts{},
		OnRouter: func(addr string) {
			p, err := parsePrefix(addr)
			if err == nil {
				err = rt.AllowIngress(p)
			}
			if err != nil {
				log.Warn("letting the router reach the containers", "router", addr, "err", err)
			}
		},
	}, containers{rt}, imageCache{&images.Builder{CacheDir: *imageDir, Mirror: *mirror}}, conn)
	if err := a.Run(ctx); err != nil {
		return err
	}
	select {
	case <-conn.Done():
		return conn.Err()
	default:
		return nil
	}
}

// teardownAll removes everything an agent made on this host.
func teardownAll(cfg lxc.Config, log *slog.Logger) error {
	if _, err := os.Stat(cfg.LXCPath); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	rt, err := lxc.New(cfg)
	if err != nil {
		return err
	}
	defer rt.Close()
	all, err := rt.List()
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range all {
		if err := rt.Destroy(context.Background(), c.Name); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, rt.RemoveNetwork())
	log.Info("teardown", "containers", len(all), "bridge", cfg.Bridge)
	return errors.Join(errs...)
}

func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		s += "/32"
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%q: want an IPv4 address or network such as 10.0.0.5 or 10.0.0.0/24", s)
	}
	return p.Masked(), nil
}

// serverAddrs are the IPv4 addresses of the bus servers in the
// credentials' URL: where the server, and with it the router, runs.
func serverAddrs(urls string) []netip.Prefix {
	var out []netip.Prefix
	for raw := range strings.SplitSeq(urls, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			continue
		}
		ips, _ := net.LookupIP(u.Hostname())
		for _, ip := range ips {
			if a, ok := netip.AddrFromSlice(ip.To4()); ok && ip.To4() != nil && !a.IsLoopback() {
				out = append(out, netip.PrefixFrom(a, 32))
			}
		}
	}
	return out
}

// primaryAddress is the first non-loopback IPv4 address of this machine.
func primaryAddress() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if ip, ok := a.(*net.IPNet); ok && !ip.IP.IsLoopback() && ip.IP.To4() != nil {
			return ip.IP.String()
		}
	}
	return ""
}

// containers is the LXC runtime as the agent sees it.
type containers struct{ *lxc.Runtime }

func (c containers) Create(ctx context.Context, s hostagent.ContainerSpec) (hostagent.Container, error) {
	var binds []lxc.Bind
	for _, b := range s.Binds {
		binds = append(binds, lxc.Bind{Source: b.Source, Target: b.Target, ReadOnly: b.ReadOnly})
	}
	got, err := c.Runtime.Create(ctx, lxc.Spec{Name: s.Name, Image: s.Image, AppDir: s.AppDir, Command: s.Command, Env: s.Env, Memory: s.Memory, CPU: s.CPU, PidsMax: s.PidsMax, IDMapBase: s.IDBase, ShmSize: s.ShmSize, Binds: binds})
	return container(got), err
}

// glusterMounts mounts volumes with GlusterFS's FUSE client.
type glusterMounts struct{}

func (glusterMounts) Mount(ctx context.Context, servers []string, volume, dir string, uid, gid int) error {
	return gluster.Mount(ctx, servers, volume, dir, uid, gid)
}

func (glusterMounts) Unmount(dir string) error { return gluster.Unmount(dir) }

// Destroy of a container that is already gone succeeds: the server may ask
// again for one the agent removed when it failed to start.
func (c containers) Destroy(ctx context.Context, name string) error {
	if err := c.Runtime.Destroy(ctx, name); err != nil && !errors.Is(err, lxc.ErrNotFound) {
		return err
	}
	return nil
}

func (c containers) Get(name string) (hostagent.Container, error) {
	got, err := c.Runtime.Get(name)
	return container(got), err
}

func (c containers) List() ([]hostagent.Container, error) {
	all, err := c.Runtime.List()
	out := make([]hostagent.Container, 0, len(all))
	for _, got := range all {
		out = append(out, container(got))
	}
	return out, err
}

func (c containers) LogLines(name string, lines int) ([]hostagent.LogLine, error) {
	got, err := c.Runtime.LogLines(name, lines)
	out := make([]hostagent.LogLine, len(got))
	for i, l := range got {
		out[i] = hostagent.LogLine(l)
	}
	return out, err
}

func (c containers) FollowLines(ctx context.Context, name string, from int64, out func(hostagent.LogLine)) error {
	return c.Runtime.FollowLines(ctx, name, from, func(l lxc.LogLine) { out(hostagent.LogLine(l)) })
}

func container(c lxc.Container) hostagent.Container {
	return hostagent.Container{Name: c.Name, IP: c.IP, State: c.State, PID: c.PID, StartedAt: c.StartedAt, ExitCode: c.ExitCode, OOMKilled: c.OOMKilled}
}

// imageCache is the image builder as the agent sees it.
type imageCache struct{ b *images.Builder }

func (i imageCache) Ensure(ctx context.Context, r runtimes.Runtime, shift uint32, progress func(string)) (hostagent.Image, error) {
	b := *i.b // a Builder has no state: one per range costs nothing
	b.Shift = shift
	img, err := b.Ensure(ctx, r, progress)
	return image(img), err
}

func (i imageCache) List() ([]hostagent.Image, error) {
	all, err := i.b.List()
	out := make([]hostagent.Image, 0, len(all))
	for _, img := range all {
		out = append(out, image(img))
	}
	return out, err
}

func image(img images.Image) hostagent.Image {
	return hostagent.Image{Runtime: img.Runtime, Key: img.Key, Shifted: img.Shifted, Built: img.Built}
}
