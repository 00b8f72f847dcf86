package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	gossh "golang.org/x/crypto/ssh"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/backend"
	"github.com/upscalehq/upscale/bus"
	"github.com/upscalehq/upscale/commands"
	"github.com/upscalehq/upscale/deploy"
	"github.com/upscalehq/upscale/dnsproof"
	"github.com/upscalehq/upscale/fleet"
	"github.com/upscalehq/upscale/gitd"
	"github.com/upscalehq/upscale/healing"
	"github.com/upscalehq/upscale/hostops"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/router"
	"github.com/upscalehq/upscale/store"
)

// shutdownGrace is how long running pushes and commands may finish after
// SIGTERM.
const shutdownGrace = 30 * time.Second

// serverOptions are the server's own settings.
type serverOptions struct {
	*options
	HTTP          string
	Bus           string
	BusListen     string
	Agent         string
	AgentArgs     string
	BuildTimeout  time.Duration
	HealthTimeout time.Duration
	StopGrace     time.Duration
	DrainTimeout  time.Duration
	Advertise     string
	SSHHost       string
	HostSubnets   netip.Prefix
	AutoRebalance bool
	EC2Endpoint   string
	DNSResolver   string
	SSH           gitd.Limits
	Limits        limitOptions
	TLS           tlsOptions
	// Builds and pushes (docs/security.md).
	BuildMemory     int64
	BuildDisk       int64
	ContainerDisk   int64
	BuildCPU        float64
	MaxPushSize     int64
	MaxBuildOutput  int64
	MaxBuildEntries int
}

// routerFrom is the router's (this box's) source address toward a host,
// looked up once per address: the status calls carry it every second.
func routerFrom() func(store.Host) string {
	var mu sync.Mutex
	seen := map[string]string{}
	return func(h store.Host) string {
		if h.Provider == "local" || h.Address == "" {
			return ""
		}
		mu.Lock()
		defer mu.Unlock()
		src, ok := seen[h.Address]
		if !ok {
			src = hostops.RouteSource(h.Address)
			seen[h.Address] = src
		}
		return src
	}
}

// prefixValue is a netip.Prefix flag.
type prefixValue struct{ p *netip.Prefix }

func (v prefixValue) String() string {
	if v.p == nil || !v.p.IsValid() {
		return "10.77.0.0/16"
	}
	return v.p.String()
}

func (v prefixValue) Set(s string) error {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() || p.Bits() > 23 {
		return fmt.Errorf("want an IPv4 range of /23 or larger, such as 10.77.0.0/16")
	}
	*v.p = p.Masked()
	return nil
}

func (v prefixValue) Type() string { return "prefix" }

func serverCommand(opts *options, stderr io.Writer) *cobra.Command {
	so := &serverOptions{options: opts}
	c := &cobra.Command{
		Use:   "server",
		Short: "Run the Upscale server: SSH for git and commands, the router, the bus",
		Args:  cobra.NoArgs,
		// The server is started by the operator on the box; it is not one
		// of the gated commands, so it skips the root's gate.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return opts.load(cmd.Flags()) },
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), so, slog.New(slog.NewTextHandler(stderr, nil)), stderr)
		},
	}
	f := c.Flags()
	f.StringVar(&opts.Listen, "listen", ":2222", "SSH listen address (git and commands)")
	f.StringVar(&so.HTTP, "http", ":80", "HTTP listen address of the router (HAProxy) in front of the apps")
	f.StringVar(&so.Bus, "bus", "", "service bus: empty for NATS embedded in this server, or nats://USER:PASS@HOST:4222")
	f.StringVar(&so.BusListen, "bus-listen", "127.0.0.1:4222", "where the embedded NATS listens for agents")
	f.StringVar(&so.Agent, "agent", "auto", "local upscale-agent to run: auto (the one next to this binary, if any), none, or a path")
	f.StringVar(&so.AgentArgs, "agent-args", "", "extra flags for the local agent, e.g. \"--subnet 10.77.0.0/24\"")
	f.DurationVar(&so.BuildTimeout, "build-timeout", 10*time.Minute, "time limit of one build")
	f.DurationVar(&so.HealthTimeout, "health-timeout", 30*time.Second, "how long a new instance may take to answer")
	f.DurationVar(&so.StopGrace, "stop-grace", 10*time.Second, "how long an old instance gets to exit after SIGTERM before SIGKILL")
	f.DurationVar(&so.DrainTimeout, "drain-timeout", 10*time.Second, "how long in-flight requests to a replaced instance may take before they are cut")
	f.StringVar(&so.Advertise, "advertise", primaryAddress(), "this server's address as other hosts reach it (bus, EC2 bootstrap)")
	f.StringVar(&so.SSHHost, "ssh-host", "", "host name printed in git remotes and hints (default: localhost for a loopback connection, else the address the client reached)")
	f.Var(prefixValue{&so.HostSubnets}, "host-subnets", "range from which each host gets a /24 for its containers")
	f.BoolVar(&so.AutoRebalance, "auto-rebalance", false, "even out instances whenever a host joins")
	f.StringVar(&so.EC2Endpoint, "ec2-endpoint", "", "EC2 endpoint URL (default: AWS)")
	f.StringVar(&so.DNSResolver, "dns-resolver", "", "DNS resolver (HOST:PORT) that custom domains' proofs of ownership are looked up with (default: the nameservers of /etc/resolv.conf)")
	f.DurationVar(&so.SSH.LoginGrace, "ssh-login-grace", 20*time.Second, "an SSH connection that has not authenticated by then is closed")
	f.IntVar(&so.SSH.MaxStartups, "ssh-max-startups", 100, "SSH connections not yet authenticated, in all (over it the oldest is closed)")
	f.IntVar(&so.SSH.MaxStartupsPerSource, "ssh-max-startups-per-source", 10, "SSH connections not yet authenticated from one address (an IPv6 /64)")
	f.IntVar(&so.SSH.MaxSessions, "ssh-max-sessions", 10, "sessions open at once on one SSH connection")
	so.Limits.register(f)
	so.TLS.register(f)
	so.BuildMemory, so.MaxPushSize, so.MaxBuildOutput = agentapi.DefaultBuildMemory, 1<<30, agentapi.DefaultMaxBuildOutput
	f.Var(sizeValue{&so.BuildMemory, 64 << 20, 64 << 30, false}, "build-memory", "memory of a build container when app.yaml sets none")
	f.Float64Var(&so.BuildCPU, "build-cpu", agentapi.DefaultBuildCPU, "cores of CPU time a build container may use")
	f.Var(sizeValue{&so.MaxPushSize, 1 << 20, 1 << 50, false}, "max-push-size", "the largest push (git's receive.maxInputSize)")
	f.Var(sizeValue{&so.MaxBuildOutput, 1 << 20, 1 << 50, false}, "max-build-output", "the largest build result, packed")
	f.IntVar(&so.MaxBuildEntries, "max-build-files", agentapi.DefaultMaxBuildEntries, "the most files, directories and links a build may leave")
	so.BuildDisk, so.ContainerDisk = agentapi.DefaultBuildDisk, agentapi.DefaultContainerDisk
	f.Var(sizeValue{&so.BuildDisk, 64 << 20, 1 << 50, false}, "build-disk", "what a build may write to its container's filesystem beyond its source (dependencies, caches, its result)")
	f.Var(sizeValue{&so.ContainerDisk, 16 << 20, 1 << 50, true}, "container-disk", "what an instance or app exec container may write to its filesystem beyond its release (over it, it is stopped and replaced)")
	so.HostSubnets = netip.MustParsePrefix("10.77.0.0/16")
	c.AddCommand(stopCommand(opts))
	return c
}

// checkLimits refuses build limits the flag types let through.
func (so *serverOptions) checkLimits() error {
	if !(so.BuildCPU >= 0.01 && so.BuildCPU <= 1024) {
		return fmt.Errorf("--build-cpu %v: want cores from 0.01 to 1024, such as 0.5 or 2", so.BuildCPU)
	}
	if so.MaxBuildEntries < 1 {
		return fmt.Errorf("--max-build-files %d: want at least 1", so.MaxBuildEntries)
	}
	return nil
}

func serve(ctx context.Context, so *serverOptions, log *slog.Logger, logOut io.Writer) error {
	if err := so.checkLimits(); err != nil {
		return err
	}
	opts := so.options
	env := &serverEnv{}
	st, err := openEnv(ctx, opts, env)
	if err != nil {
		return err
	}
	defer st.Close()
	env.Log = log
	if err := refreshHooks(ctx, env); err != nil {
		return err
	}

	conn, embedded, err := startBus(ctx, so, log)
	if err != nil {
		return err
	}
	if embedded != nil {
		defer embedded.Shutdown()
	}
	defer conn.Close()
	agentClient := agentapi.Client{Bus: conn}

	_, httpPort, err := net.SplitHostPort(so.HTTP)
	if err != nil {
		return fmt.Errorf("--http %q: %w", so.HTTP, err)
	}
	tlsEngine, err := startHTTPS(ctx, &so.TLS, opts.Domain, opts.Data, st, log)
	if err != nil {
		return err
	}
	rcfg := router.Config{Dir: filepath.Join(opts.Data, "router"), HTTPAddr: so.HTTP, DrainTimeout: so.DrainTimeout, Log: log}
	var httpsPort string
	if tlsEngine != nil {
		rcfg.HTTPSAddr, rcfg.ACMEAddr, httpsPort = so.TLS.HTTPS, tlsEngine.acmeAddr, tlsEngine.port
	}
	rt, err := router.Start(ctx, rcfg)
	if err != nil {
		return err
	}
	var certNames deploy.Certs
	var backendCerts backend.Certs = httpsOff{}
	if tlsEngine != nil {
		tlsEngine.attach(rt)
		certNames, backendCerts = tlsEngine.names, tlsEngine.names
	}
	go rt.Watch(ctx, 500*time.Millisecond)
	routerStatus := func(ctx context.Context) string { return routerLine(rt.Status(ctx)) }

	hosts := fleet.New(log)
	hosts.RouterFrom = routerFrom()
	agents := newAgentSupervisor(so, embedded, log, logOut)
	if err := agents.register(ctx, st); err != nil {
		return err
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()

	// Host record changes (weights, drains) reach the fleet at once.
	tracked := hosts.Tracked(st)
	proofs, err := dnsproof.New(so.DNSResolver)
	if err != nil {
		return err
	}
	deployer, err := deploy.New(deploy.Config{
		Store: tracked, Bus: conn, Agents: agentClient, Router: rt, Hosts: hosts, Catalog: env.Catalog, Repos: env.Repos,
		Domain: opts.Domain, HTTPPort: httpPort, HTTPSPort: httpsPort, Certs: certNames, Proofs: proofs,
		BuildTimeout: so.BuildTimeout, HealthTimeout: so.HealthTimeout, StopGrace: so.StopGrace, Log: log,
		DefaultCPU: so.Limits.DefaultCPU, DefaultMemory: so.Limits.DefaultMemory, Quota: so.Limits.Quota,
		BuildMemory: so.BuildMemory, BuildCPU: so.BuildCPU, MaxBuildOutput: so.MaxBuildOutput, MaxBuildEntries: so.MaxBuildEntries,
		BuildDisk: so.BuildDisk, ContainerDisk: so.ContainerDisk,
	})
	if err != nil {
		return err
	}
	if err := deployer.Sync(ctx); err != nil {
		return fmt.Errorf("routing what the store says is live: %w", err)
	}
	// Before the SSH server takes pushes: every build now is a new one.
	if err := deployer.FailInterrupted(ctx); err != nil {
		log.Warn("cleaning up interrupted builds", "err", err)
	}
	healer, err := healing.New(healing.Config{Store: tracked, Hosts: hosts, Engine: deployer, Route: hostops.Route,
		AutoRebalance: so.AutoRebalance, Log: log})
	if err != nil {
		return err
	}
	ops := &hostops.Ops{
		Store: tracked, Fleet: hosts, Mover: healer, Agent: agentBinary(so), Subnets: so.HostSubnets,
		SSH: net.JoinHostPort(so.Advertise, port(opts.Listen)), AutoRebalance: so.AutoRebalance,
		EC2Endpoint: so.EC2Endpoint, Log: log,
	}
	if embedded != nil {
		ops.Bus = embedded
	}
	env.Backend = backend.New(backend.Config{Store: st, Repos: env.Repos, Domain: opts.Domain, Quota: so.Limits.Quota,
		Apps: deployer, Usage: deployer.Usage, Lifecycle: deployer, Catalog: env.Catalog, Deploys: deployer, Log: log, Hosts: hosts.Hosts, Router: routerStatus, HostOps: ops,
		Certs: backendCerts, Reroute: deployer.Sync})
	// Heals when a host goes down, routes (and rebalances) when one comes
	// up, and every 2 s from fleet.DownAfter on.
	healer.Watch(wctx, hosts, 2*time.Second)
	go hosts.Watch(wctx, agentClient, st.ListHosts, time.Second)
	// Each pass checks only the pending domains that are due (see
	// deploy.DomainDue), so a short tick costs one store read.
	go deployer.RunDomainChecks(wctx, 5*time.Second)

	hostKey, err := gitd.LoadHostKey(filepath.Join(opts.Data, "ssh_host_ed25519_key"))
	if err != nil {
		return err
	}
	// EC2 hosts pin it to fetch their agent (hosts create).
	ops.HostKey = strings.TrimSpace(string(gossh.MarshalAuthorizedKey(hostKey.PublicKey())))
	sock := filepath.Join(opts.Data, "run", "hook.sock")
	hookLn, err := listenUnix(sock, opts.Data)
	if err != nil {
		return err
	}
	removePID, err := writePID(opts.Data)
	if err != nil {
		hookLn.Close()
		return err
	}
	defer removePID()
	recordAgent(opts.Data, agents.bin, so.AgentArgs)
	sshLn, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		hookLn.Close()
		return fmt.Errorf("ssh listener: %w", err)
	}
	srv := gitd.New(gitd.Config{
		HostKey:     hostKey,
		Keys:        backend.NewAuthenticator(st),
		Pushes:      env.Backend,
		Repos:       env.Repos,
		SocketPath:  sock,
		Log:         log,
		IdleTimeout: 10 * time.Minute,
		Limits:      so.SSH,
		HookTimeout: so.BuildTimeout + so.HealthTimeout + 5*time.Minute,
		MaxPushSize: so.MaxPushSize,
		SSHHost:     so.SSHHost,
		Run: func(ctx context.Context, inv commands.Invocation, args []string) int {
			return commands.New(&env.Env, inv, nil).Execute(ctx, args)
		},
	})
	env.Git = srv.Git()

	adminLn, err := listenUnix(adminSocket(opts.Data), opts.Data)
	if err != nil {
		return err
	}
	defer adminLn.Close()
	errs := make(chan error, 5)
	go func() {
		errs <- serveAdmin(ctx, adminLn, &env.Env, "ssh://upscale@"+net.JoinHostPort(cmp.Or(so.SSHHost, so.Advertise), port(opts.Listen)), log)
	}()
	go func() { errs <- srv.ServeHooks(hookLn) }()
	go func() { errs <- srv.ServeSSH(sshLn) }()
	go func() { errs <- agents.run(ctx) }()
	if tlsEngine != nil {
		go func() {
			if err := tlsEngine.run(ctx); err != nil {
				errs <- fmt.Errorf("certificates: %w", err)
			}
		}()
		tlsEngine.announce(log, opts.Domain)
	}
	log.Info("upscale server started", "ssh", sshLn.Addr().String(), "http", so.HTTP, "bus", busName(so),
		"data", opts.Data, "store", storeName(opts.DB), "domain", opts.Domain)
	if admins, err := st.ListKeys(ctx, store.KeyFilter{AdminOnly: true}); err == nil && len(admins) == 0 {
		log.Info(fmt.Sprintf(`no admin key yet; add yours with: %s --data %s keys add --admin --name me --public "$(cat ~/.ssh/id_ed25519.pub)"`, env.Repos.Binary, opts.Data))
	}
	select {
	case <-ctx.Done():
		log.Info("stopping: waiting for running sessions", "grace", shutdownGrace.String())
	case err = <-errs:
		log.Error("server failed", "err", err)
	case <-conn.Done():
		err = fmt.Errorf("lost the bus for good: %w", conn.Err())
		log.Error("server failed", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		log.Warn("sessions cut at shutdown", "err", serr)
	}
	agents.stop()
	adminLn.Close()
	os.Remove(sock)
	os.Remove(adminSocket(opts.Data))
	// HAProxy and the containers keep serving: the next start adopts them.
	log.Info("upscale server stopped")
	return err
}

// startBus starts the embedded NATS (unless --bus names another) and
// connects the server to it.
func startBus(ctx context.Context, so *serverOptions, log *slog.Logger) (*bus.Conn, *bus.Embedded, error) {
	var creds bus.Credentials
	var embedded *bus.Embedded
	if so.Bus != "" {
		c, err := bus.CredentialsFromURL(so.Bus)
		if err != nil {
			return nil, nil, fmt.Errorf("--bus: %w", err)
		}
		creds = c
	} else {
		_, busPort, _ := net.SplitHostPort(so.BusListen)
		cfg := bus.EmbeddedConfig{Dir: filepath.Join(so.Data, "bus"), Listen: so.BusListen, Log: log}
		if h, _, _ := net.SplitHostPort(so.BusListen); h != "127.0.0.1" && h != "localhost" && so.Advertise != "" && busPort != "0" {
			// Agents on other hosts dial the advertised address, which the
			// bus's certificate must name.
			cfg.Advertise = net.JoinHostPort(so.Advertise, busPort)
			cfg.TLSNames = []string{so.Advertise, "127.0.0.1", "localhost"}
		}
		e, err := bus.StartEmbedded(cfg)
		if err != nil {
			return nil, nil, err
		}
		embedded, creds = e, e.ServerCredentials()
	}
	conn, err := bus.Connect(ctx, creds, "upscale-server", bus.WithLogger(log))
	if err != nil {
		if embedded != nil {
			embedded.Shutdown()
		}
		return nil, nil, fmt.Errorf("connecting to the bus: %w", err)
	}
	return conn, embedded, nil
}

// refreshHooks rewrites the hook shims of every app whose shims point
// elsewhere (the binary moved since they were written).
func refreshHooks(ctx context.Context, env *serverEnv) error {
	apps, err := env.Store.ListApps(ctx, "")
	if err != nil {
		return err
	}
	for _, a := range apps {
		if _, err := env.Repos.EnsureHooks(names.App{Namespace: a.Namespace, Name: a.Name}); err != nil {
			return fmt.Errorf("app %s/%s: %w", a.Namespace, a.Name, err)
		}
	}
	return nil
}

// listenUnix opens the hook socket, refusing to steal it from a running
// server on the same data directory.
func listenUnix(path, data string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("hook socket: %w", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("another upscale server is running with data directory %s", data)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("hook socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("hook socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("hook socket: %w", err)
	}
	return l, nil
}

func storeName(dsn string) string {
	if dsn == "" {
		return "sqlite"
	}
	scheme, _, _ := strings.Cut(dsn, "://")
	return scheme
}

func busName(so *serverOptions) string {
	if so.Bus == "" {
		return "embedded " + so.BusListen
	}
	c, err := bus.CredentialsFromURL(so.Bus)
	if err != nil {
		return "?"
	}
	return c.URL
}

// agentBinary is the upscale-agent that hosts add copies to new hosts: the
// local agent's, or the one next to this binary.
func agentBinary(so *serverOptions) string {
	if so.Agent != "auto" && so.Agent != "none" {
		return so.Agent
	}
	exe, err := os.Executable()
	if err != nil {
		return "upscale-agent"
	}
	return filepath.Join(filepath.Dir(exe), "upscale-agent")
}

// routerLine is the router's state as hosts list shows it.
func routerLine(st router.Status) string {
	line := "haproxy down"
	if st.Running {
		line = fmt.Sprintf("haproxy up (master pid %d, worker pid %d)", st.Master, st.Worker)
	}
	if st.Restarts > 0 {
		line += fmt.Sprintf("; found dead and restarted %d time(s), last at %s", st.Restarts, st.LastRestart.UTC().Format("2006-01-02 15:04:05Z"))
	}
	return line
}
