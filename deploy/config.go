package deploy

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/builder"
	"github.com/upscalehq/upscale/repos"
	"github.com/upscalehq/upscale/runtimes"
	"github.com/upscalehq/upscale/store"
)

// Config is what a Deployer acts on and its limits.
type Config struct {
	// Required: the store, the artifact store, the agents, the router,
	// the hosts, the runtimes, the repositories and the apps' domain.
	Store   store.Store
	Bus     builder.Bus // artifacts
	Agents  agentapi.Agents
	Router  Router
	Hosts   Hosts
	Catalog *runtimes.Catalog
	Repos   *repos.Repos
	Domain  string

	HTTPPort string // public HTTP port; "" or "80" leave it out of URLs
	// HTTPSPort is the public HTTPS port ("" without HTTPS; "443" is left
	// out of URLs): an app's URL is https once its hostname has a live
	// certificate in the store.
	HTTPSPort string
	// Certs is told every hostname routed, after each change of the
	// router's routes; nil: no certificates.
	Certs        Certs
	BuildTimeout time.Duration
	// A build container's memory when app.yaml sets none, and its CPU
	// (cores); the most a build may leave, packed and in entries. 0 is
	// agentapi's default for each.
	BuildMemory     int64
	BuildCPU        float64
	MaxBuildOutput  int64
	MaxBuildEntries int
	BuildDisk       int64 // what a build may write beyond its source
	// ContainerDisk is what an instance or exec container may write to
	// its filesystem beyond its release; 0 is no limit.
	ContainerDisk int64
	HealthTimeout time.Duration
	StopGrace     time.Duration
	// Proofs looks up custom domains' proofs of ownership; nil turns
	// domain checks off (every claim stays pending).
	Proofs ProofChecker
	// Now is the clock of domain checks; nil is time.Now.
	Now func() time.Time
	// DefaultCPU is the CPU limit, in cores, of a container whose app.yaml
	// sets no cpu; 0 leaves such containers unlimited.
	DefaultCPU float64
	// DefaultMemory is the memory limit of a container whose app.yaml
	// sets no memory; 0 means the DefaultMemory constant.
	DefaultMemory int64
	// Quota is the operator's default quota of a namespace that set none
	// of its own; a 0 in it is no limit.
	Quota store.Quota
	// Log is nil for no logging.
	Log *slog.Logger
}

// New returns a Deployer over cfg, refusing a cfg that lacks what every
// deploy needs: a server that starts with one would fail only at the first
// push.
func New(cfg Config) (*Deployer, error) {
	var missing []string
	for _, m := range []struct {
		name string
		nil  bool
	}{
		{"Store", cfg.Store == nil}, {"Bus", cfg.Bus == nil}, {"Agents", cfg.Agents == nil}, {"Router", cfg.Router == nil},
		{"Hosts", cfg.Hosts == nil}, {"Catalog", cfg.Catalog == nil}, {"Repos", cfg.Repos == nil}, {"Domain", cfg.Domain == ""},
	} {
		if m.nil {
			missing = append(missing, m.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("deploy.New: no %s", strings.Join(missing, ", "))
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Deployer{cfg: cfg}, nil
}
