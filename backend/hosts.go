package backend

import (
	"context"
	"errors"
	"io"
	"slices"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/cloud"
	"github.com/upscalehq/upscale/hostops"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
)

// HostOps is what manages hosts (see hostops.Ops).
type HostOps interface {
	Add(ctx context.Context, r hostops.AddRequest, out func(string)) error
	Create(ctx context.Context, r hostops.CreateRequest, out func(string)) error
	SetWeight(ctx context.Context, name string, w int) error
	Drain(ctx context.Context, name string, force bool, out func(string)) error
	Remove(ctx context.Context, name string, out func(string)) error
	Destroy(ctx context.Context, name string, out func(string)) error
	Rebalance(ctx context.Context, dryRun bool, out func(string)) error
	Bootstrap(ctx context.Context, name, keyFP string, w io.Writer) error
}

// ErrHostsNeedServer refuses host management where no server runs.
var ErrHostsNeedServer = errors.New("hosts are managed by the running server: start it (upscale server), then run this again")

// Host is a host with its record and what it said last.
type Host struct {
	Name, Address string
	State         string // up, down, draining
	Weight        int
	Subnet        string
	Provider      string
	CPUs          int
	Containers    int
	MemTotal      uint64
	MemFree       uint64
	LastHeartbeat time.Time
	// HostKey is the SSH host key(s) pinned at hosts add, authorized_keys lines.
	HostKey string
}

// Runtime is a runtime apps can use, and the hosts that have built its
// image.
type Runtime struct {
	Name, Description string
	Detect            []string
	Start             string
	Source            string
	BuiltOn           []string
}

// RuntimeList is every runtime, and how many hosts there are.
type RuntimeList struct {
	Runtimes []Runtime
	Hosts    int
}

// NewHost is a machine to install an agent on over SSH.
type NewHost struct {
	Name, Address, User string
	Weight              int
	Dir                 string // install directory on the machine
	// HostKeys are the machine's SSH host keys as ssh-keyscan prints them;
	// KnownHosts a known_hosts file on the server's machine that lists
	// them; TrustHostKey accepts what the machine presents now.
	HostKeys     []string
	KnownHosts   string
	TrustHostKey bool
	// Identity reads the SSH private key, once the rest is found good.
	Identity func() ([]byte, error)
}

// NewEC2Host is an EC2 instance to start that installs itself as a host.
type NewEC2Host struct {
	Name                                                 string
	Weight                                               int
	Region, InstanceType, AMI, Subnet, KeyName, Endpoint string
}

// HostKeyError is a host key that is not one.
type HostKeyError struct{ Err error }

func (e *HostKeyError) Error() string { return e.Err.Error() }
func (e *HostKeyError) Unwrap() error { return e.Err }

// CheckHostKey says what is wrong with a host key as ssh-keyscan prints it.
func CheckHostKey(text string) error {
	_, err := cloud.ParseHostKey(text)
	return err
}

// Hosts are the hosts as last heard from (admins).
func (b *Backend) Hosts(ctx context.Context, who keys.Principal) ([]Host, error) {
	if err := allow(who, keys.HostsList, keys.Target{}, "", "hosts list"); err != nil {
		return nil, err
	}
	hosts := []Host{}
	if b.cfg.Hosts == nil {
		return hosts, nil
	}
	for _, h := range b.cfg.Hosts() {
		v := Host{Name: h.Name, Address: h.Address, State: h.State, Weight: max(h.Record.Weight, 1),
			Subnet: h.Record.Subnet, Provider: h.Record.Provider, CPUs: h.CPUs, Containers: h.Containers,
			MemTotal: h.MemTotal, MemFree: h.MemFree, LastHeartbeat: h.At, HostKey: h.Record.HostKey}
		hosts = append(hosts, v)
	}
	return hosts, nil
}

// RouterStatus says in one line how the router is (admins); "" where no
// server runs.
func (b *Backend) RouterStatus(ctx context.Context, who keys.Principal) (string, error) {
	if err := allow(who, keys.HostsList, keys.Target{}, "", "hosts list"); err != nil {
		return "", err
	}
	if b.cfg.Router == nil {
		return "", nil
	}
	return b.cfg.Router(ctx), nil
}

// Runtimes are the runtimes apps can use, with the hosts that have built
// each one's image.
func (b *Backend) Runtimes(ctx context.Context, who keys.Principal) (RuntimeList, error) {
	if err := allow(who, keys.RuntimesList, keys.Target{}, "", "runtimes list"); err != nil {
		return RuntimeList{}, err
	}
	var hosts []agentapi.Beat
	if b.cfg.Hosts != nil {
		for _, h := range b.cfg.Hosts() {
			hosts = append(hosts, h.Beat)
		}
	}
	l := RuntimeList{Hosts: len(hosts)}
	if b.cfg.Catalog == nil {
		return l, nil
	}
	for _, r := range b.cfg.Catalog.All() {
		v := Runtime{Name: r.Name, Description: r.Description, Detect: r.Detect, Start: r.Start, Source: r.Source, BuiltOn: []string{}}
		for _, h := range hosts {
			if slices.ContainsFunc(h.Images, func(im agentapi.ImageInfo) bool { return im.Runtime == r.Name }) {
				v.BuiltOn = append(v.BuiltOn, h.Name)
			}
		}
		l.Runtimes = append(l.Runtimes, v)
	}
	return l, nil
}

// manage authorizes who to manage hosts, as what (for the refusal), where
// a server runs.
func (b *Backend) manage(who keys.Principal, what string) error {
	if err := allow(who, keys.HostsManage, keys.Target{}, "", what); err != nil {
		return err
	}
	if b.cfg.HostOps == nil {
		return ErrHostsNeedServer
	}
	return nil
}

// AddHost installs an agent on a machine over SSH and adds it as a host
// (admins); progress goes to out.
func (b *Backend) AddHost(ctx context.Context, who keys.Principal, h NewHost, out func(string)) error {
	if err := b.manage(who, "hosts add"); err != nil {
		return err
	}
	r := hostops.AddRequest{Name: h.Name, Address: h.Address, User: h.User, Weight: h.Weight, Dir: h.Dir,
		KnownHosts: h.KnownHosts, TrustHostKey: h.TrustHostKey}
	for _, text := range h.HostKeys {
		k, err := cloud.ParseHostKey(text)
		if err != nil {
			return &HostKeyError{Err: err}
		}
		r.HostKeys = append(r.HostKeys, k)
	}
	if h.Identity == nil {
		return errors.New("no identity: the machine's SSH private key is needed")
	}
	key, err := h.Identity()
	if err != nil {
		return err
	}
	r.Identity = key
	return b.cfg.HostOps.Add(ctx, r, out)
}

// CreateHost starts an EC2 instance whose first boot installs an agent and
// joins (admins).
func (b *Backend) CreateHost(ctx context.Context, who keys.Principal, h NewEC2Host, out func(string)) error {
	if err := b.manage(who, "hosts create"); err != nil {
		return err
	}
	if h.AMI == "" {
		return errors.New("an EC2 host needs an AMI (a Debian 12 one)")
	}
	r := hostops.CreateRequest{Name: h.Name, Weight: h.Weight}
	r.EC2.Region, r.EC2.InstanceType, r.EC2.AMI, r.EC2.Subnet, r.EC2.KeyName, r.EC2.Endpoint =
		h.Region, h.InstanceType, h.AMI, h.Subnet, h.KeyName, h.Endpoint
	return b.cfg.HostOps.Create(ctx, r, out)
}

// SetHostWeight changes a host's share of new containers (admins).
func (b *Backend) SetHostWeight(ctx context.Context, who keys.Principal, name string, weight int) error {
	if err := b.manage(who, "hosts set"); err != nil {
		return err
	}
	return b.cfg.HostOps.SetWeight(ctx, name, weight)
}

// DrainHost moves every instance off a host without dropping requests;
// force drains the last host an app can run on too (admins).
func (b *Backend) DrainHost(ctx context.Context, who keys.Principal, name string, force bool, out func(string)) error {
	if err := b.manage(who, "hosts drain"); err != nil {
		return err
	}
	return b.cfg.HostOps.Drain(ctx, name, force, out)
}

// RemoveHost forgets a drained host; its agent stops (admins).
func (b *Backend) RemoveHost(ctx context.Context, who keys.Principal, name string, out func(string)) error {
	if err := b.manage(who, "hosts remove"); err != nil {
		return err
	}
	return b.cfg.HostOps.Remove(ctx, name, out)
}

// DestroyHost removes a drained EC2 host and terminates its instance
// (admins).
func (b *Backend) DestroyHost(ctx context.Context, who keys.Principal, name string, out func(string)) error {
	if err := b.manage(who, "hosts destroy"); err != nil {
		return err
	}
	return b.cfg.HostOps.Destroy(ctx, name, out)
}

// Rebalance evens out instances across hosts, or with dryRun only says
// what would move (admins).
func (b *Backend) Rebalance(ctx context.Context, who keys.Principal, dryRun bool, out func(string)) error {
	if err := b.manage(who, "hosts rebalance"); err != nil {
		return err
	}
	return b.cfg.HostOps.Rebalance(ctx, dryRun, out)
}

// BootstrapHost writes a new EC2 host's agent and credentials to w, for
// that host's own bootstrap key only.
func (b *Backend) BootstrapHost(ctx context.Context, who keys.Principal, name string, w io.Writer) error {
	if err := names.Check("host", name); err != nil {
		return err
	}
	if err := allow(who, keys.HostsBootstrap, keys.Target{Host: name}, "not allowed", ""); err != nil {
		return err
	}
	if b.cfg.HostOps == nil {
		return ErrHostsNeedServer
	}
	return b.cfg.HostOps.Bootstrap(ctx, name, who.Fingerprint, w)
}
