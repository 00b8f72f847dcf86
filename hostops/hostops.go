// Package hostops adds, removes and moves hosts: it provisions the agent on
// a machine over SSH or on a new EC2 instance, gives it credentials and a
// container subnet, routes that subnet, and waits until the host is up.
package hostops

import (
	"archive/tar"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/upscalehq/upscale/bus"
	"github.com/upscalehq/upscale/cloud"
	"github.com/upscalehq/upscale/fleet"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// Credentials issues and revokes agents' bus credentials (the embedded
// bus).
type Credentials interface {
	AgentCredentials(host string) (bus.Credentials, error)
	RemoveAgent(host string) error
}

// Mover moves instances off and across hosts (healing.Healer).
type Mover interface {
	Drain(ctx context.Context, host string, force bool, out func(string)) error
	Rebalance(ctx context.Context, dryRun bool, out func(string)) error
}

// Ops is what the hosts commands do.
type Ops struct {
	Store store.Store
	Fleet *fleet.Fleet
	Mover Mover
	Bus   Credentials // nil with an external bus: hosts cannot be added
	// Agent is the upscale-agent binary copied to new hosts.
	Agent string
	// SSH is where new hosts reach this server's SSH (EC2 bootstrap), and
	// HostKey its host key in authorized_keys form.
	SSH     string
	HostKey string
	// Subnets is the range host subnets (/24 each) are taken from.
	Subnets netip.Prefix
	// AutoRebalance evens out instances when a host comes up.
	AutoRebalance bool
	// Wait is how long a new host may take to come up.
	Wait time.Duration
	// EC2Endpoint overrides the EC2 endpoint (tests).
	EC2Endpoint string
	Log         *slog.Logger
}

// AddRequest is `hosts add`.
type AddRequest struct {
	Name     string
	Address  string // host or host:port of its SSH
	User     string
	Identity []byte
	Weight   int
	Dir      string // install directory on the host
	// The host's SSH key, one way: the keys it may present, a known_hosts
	// file that lists them, or trust in whatever it presents now.
	HostKeys     []gossh.PublicKey
	KnownHosts   string
	TrustHostKey bool
}

// hostKeys are the keys the host must present, pinned from r before
// anything is installed or recorded.
func (o *Ops) hostKeys(ctx context.Context, r AddRequest, host, port string, out func(string)) ([]gossh.PublicKey, error) {
	ways := 0
	for _, given := range []bool{len(r.HostKeys) > 0, r.KnownHosts != "", r.TrustHostKey} {
		if given {
			ways++
		}
	}
	switch {
	case ways == 0:
		return nil, fmt.Errorf("hosts add needs the host's SSH key: pass --host-key 'ssh-ed25519 AAAA...' (ssh-keyscan -t ed25519 %s prints it; check it out of band), --known-hosts FILE, or --trust-host-key to accept the key it presents now", host)
	case ways > 1:
		return nil, errors.New("give the host's key one way: --host-key, --known-hosts or --trust-host-key")
	case r.KnownHosts != "":
		return cloud.KnownHostKeys(r.KnownHosts, host, port)
	case r.TrustHostKey:
		k, err := cloud.ScanHostKey(ctx, net.JoinHostPort(host, port), 0)
		if err != nil {
			return nil, err
		}
		out(fmt.Sprintf("-----> Host key of %s: %s %s (trusted on first use, not verified; pinned from now on)", host, k.Type(), gossh.FingerprintSHA256(k)))
		return []gossh.PublicKey{k}, nil
	}
	return r.HostKeys, nil
}

// Add provisions an existing machine over SSH.
func (o *Ops) Add(ctx context.Context, r AddRequest, out func(string)) error {
	if o.Bus == nil {
		return errors.New("hosts add needs the bus embedded in this server (not --bus)")
	}
	host, port, err := splitHostPort(r.Address)
	if err != nil {
		return err
	}
	if r.Name == "" {
		r.Name = "h" + strings.NewReplacer(".", "-", ":", "-").Replace(host)
	}
	if err := names.Check("host", r.Name); err != nil {
		return err
	}
	hostKeys, err := o.hostKeys(ctx, r, host, port, out)
	if err != nil {
		return err
	}
	subnet, err := o.freeSubnet(ctx)
	if err != nil {
		return err
	}
	rec, err := o.Store.AddHost(ctx, store.Host{Name: r.Name, Address: host, Subnet: subnet, Weight: r.Weight, Provider: "ssh",
		HostKey: cloud.AuthorizedKeys(hostKeys)})
	if errors.Is(err, store.ErrConflict) {
		return alreadyRegistered(ctx, o.Store, r.Name, host)
	}
	if err != nil {
		return err
	}
	undo := func() {
		o.Bus.RemoveAgent(r.Name)
		o.Store.RemoveHost(context.WithoutCancel(ctx), r.Name)
	}
	creds, err := o.credentials(r.Name)
	if err != nil {
		undo()
		return err
	}
	in := cloud.Install{Host: r.Name, Address: host, Subnet: subnet, Credentials: creds, Agent: o.Agent, Dir: r.Dir, Router: RouteSource(host)}
	if _, err := cloud.Provision(ctx, cloud.SSHTarget{Addr: net.JoinHostPort(host, port), User: r.User, Identity: r.Identity, HostKeys: hostKeys}, in, out); err != nil {
		undo()
		return err
	}
	return o.bringUp(ctx, rec, out)
}

func alreadyRegistered(ctx context.Context, st store.Store, name, address string) error {
	hosts, err := st.ListHosts(ctx)
	if err != nil {
		return err
	}
	for _, h := range hosts {
		if h.Name == name || h.Address == address {
			return fmt.Errorf("%s is already registered as host %s (address %s)", address, h.Name, h.Address)
		}
	}
	return fmt.Errorf("host %s or address %s is already registered", name, address)
}

func (o *Ops) credentials(host string) ([]byte, error) {
	c, err := o.Bus.AgentCredentials(host)
	if err != nil {
		return nil, err
	}
	if u, err := url.Parse(c.URL); err == nil && (u.Hostname() == "127.0.0.1" || u.Hostname() == "localhost") {
		o.Bus.RemoveAgent(host)
		return nil, errors.New("the bus listens on this machine only: start the server with --bus-listen 0.0.0.0:4222 --advertise ITS-ADDRESS so other hosts can reach it")
	}
	f, err := os.CreateTemp("", "upscale-creds-")
	if err != nil {
		return nil, err
	}
	f.Close()
	defer os.Remove(f.Name())
	if err := c.Write(f.Name()); err != nil {
		return nil, err
	}
	return os.ReadFile(f.Name())
}

// bringUp routes the new host's subnet and waits until it answers.
func (o *Ops) bringUp(ctx context.Context, h store.Host, out func(string)) error {
	if err := Route(h); err != nil {
		out("warning: " + err.Error())
	}
	out(fmt.Sprintf("-----> Waiting for %s to come up", h.Name))
	deadline := time.Now().Add(o.wait())
	for {
		for _, fh := range o.Fleet.Hosts() {
			if fh.Name == h.Name && fh.Up {
				out(fmt.Sprintf("=====> Host %s is up: %d CPUs, %.1f GiB free, containers on %s", h.Name, fh.CPUs, float64(fh.MemFree)/(1<<30), h.Subnet))
				if o.AutoRebalance {
					return o.Mover.Rebalance(ctx, false, out)
				}
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("host %s was installed but did not come up within %s; its agent log tells why", h.Name, o.wait())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (o *Ops) wait() time.Duration {
	if o.Wait > 0 {
		return o.Wait
	}
	return 2 * time.Minute
}

// freeSubnet is the first /24 of Subnets no host has, skipping the first
// (the server's own box).
func (o *Ops) freeSubnet(ctx context.Context) (string, error) {
	hosts, err := o.Store.ListHosts(ctx)
	if err != nil {
		return "", err
	}
	used := map[string]bool{}
	for _, h := range hosts {
		used[h.Subnet] = true
	}
	base := o.Subnets.Masked().Addr().As4()
	for i := 1; i < 256; i++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1], byte(i), 0}), 24)
		if o.Subnets.Contains(p.Addr()) && !used[p.String()] {
			return p.String(), nil
		}
	}
	return "", fmt.Errorf("no free /24 left in %s", o.Subnets)
}

// Drain moves every instance off a host (see healing.Healer.Drain).
func (o *Ops) Drain(ctx context.Context, name string, force bool, out func(string)) error {
	return o.Mover.Drain(ctx, name, force, out)
}

// Rebalance evens out instances (see healing.Healer.Rebalance).
func (o *Ops) Rebalance(ctx context.Context, dryRun bool, out func(string)) error {
	return o.Mover.Rebalance(ctx, dryRun, out)
}

// SetWeight changes a host's share of new containers.
func (o *Ops) SetWeight(ctx context.Context, name string, w int) error {
	if w < 1 || w > 1000 {
		return fmt.Errorf("weight must be from 1 to 1000, not %d", w)
	}
	return o.Store.SetHostWeight(ctx, name, w)
}

// Remove forgets a drained host: its credentials stop working (its agent
// exits), its route goes.
func (o *Ops) Remove(ctx context.Context, name string, out func(string)) error {
	h, err := o.Store.GetHost(ctx, name)
	if err != nil {
		return err
	}
	if err := o.Store.RemoveHost(ctx, name); errors.Is(err, store.ErrNotEmpty) {
		return fmt.Errorf("host %s still runs instances; move them first with hosts drain %s", name, name)
	} else if err != nil {
		return err
	}
	if o.Bus != nil {
		if err := o.Bus.RemoveAgent(name); err != nil {
			out("warning: " + err.Error())
		}
	}
	Unroute(h)
	out(fmt.Sprintf("=====> Host %s removed; its agent stops", name))
	return nil
}

// Bootstrap writes, for a new EC2 host, an uncompressed tar of its agent
// binary and credentials (the answer to `hosts bootstrap NAME`). The
// bootstrap key stays valid until the host is up (Create removes it then),
// so that a transfer cut halfway can be retried.
func (o *Ops) Bootstrap(ctx context.Context, name, keyFP string, w io.Writer) error {
	if _, err := o.Store.GetHost(ctx, name); err != nil {
		return err
	}
	creds, err := o.credentials(name)
	if err != nil {
		return err
	}
	agent, err := os.Open(o.Agent)
	if err != nil {
		return fmt.Errorf("the agent binary: %w", err)
	}
	defer agent.Close()
	st, err := agent.Stat()
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(&tar.Header{Name: "upscale-agent", Mode: 0o755, Size: st.Size(), ModTime: st.ModTime()}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, agent); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "credentials.json", Mode: 0o600, Size: int64(len(creds)), ModTime: time.Now()}); err != nil {
		return err
	}
	if _, err := tw.Write(creds); err != nil {
		return err
	}
	return tw.Close()
}

// CreateRequest is `hosts create --provider ec2`.
type CreateRequest struct {
	Name   string
	Weight int
	EC2    cloud.EC2Config
}

// Create runs a new EC2 instance that installs itself as a host.
func (o *Ops) Create(ctx context.Context, r CreateRequest, out func(string)) error {
	if o.Bus == nil {
		return errors.New("hosts create needs the bus embedded in this server (not --bus)")
	}
	if r.Name == "" {
		b := make([]byte, 3)
		rand.Read(b)
		r.Name = fmt.Sprintf("ec2-%x", b)
	}
	if err := names.Check("host", r.Name); err != nil {
		return err
	}
	if _, err := o.Store.GetHost(ctx, r.Name); err == nil {
		return fmt.Errorf("host %s already exists", r.Name)
	}
	subnet, err := o.freeSubnet(ctx)
	if err != nil {
		return err
	}
	if r.EC2.Endpoint == "" {
		r.EC2.Endpoint = o.EC2Endpoint
	}
	e, err := cloud.NewEC2(ctx, r.EC2)
	if err != nil {
		return err
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	sshPub, _ := gossh.NewPublicKey(pub)
	block, err := gossh.MarshalPrivateKey(priv, "bootstrap "+r.Name)
	if err != nil {
		return err
	}
	key, err := o.Store.AddKey(ctx, store.Key{
		Fingerprint: gossh.FingerprintSHA256(sshPub), Name: "bootstrap-" + r.Name, Role: keys.RoleBootstrap, App: r.Name,
		Type: sshPub.Type(), PublicKey: strings.TrimSpace(string(gossh.MarshalAuthorizedKey(sshPub))), AddedBy: "hosts create",
	})
	if err != nil {
		return err
	}
	// The instance's address is not known yet; the router reaches it from
	// the address its default route leaves from (one VPC, one subnet).
	in := cloud.Install{Host: r.Name, Subnet: subnet, Router: RouteSource("1.1.1.1")}
	userData := cloud.UserData(in, o.SSH, o.HostKey, pem.EncodeToMemory(block))
	out(fmt.Sprintf("-----> Starting an EC2 instance for %s (%s, %s)", r.Name, r.EC2.InstanceType, r.EC2.AMI))
	id, ip, err := e.Create(ctx, r.Name, userData)
	if err != nil {
		o.Store.RemoveKey(context.WithoutCancel(ctx), key.Fingerprint)
		return err
	}
	out(fmt.Sprintf("       instance %s running at %s; it installs its agent now", id, ip))
	rec, err := o.Store.AddHost(ctx, store.Host{Name: r.Name, Address: ip, Subnet: subnet, Weight: r.Weight, Provider: "ec2", InstanceID: id, Region: r.EC2.Region})
	if err != nil {
		e.Terminate(context.WithoutCancel(ctx), id)
		return err
	}
	err = o.bringUp(ctx, rec, out)
	o.Store.RemoveKey(context.WithoutCancel(ctx), key.Fingerprint)
	if err != nil {
		return fmt.Errorf("%w (instance %s keeps running: hosts destroy %s terminates it)", err, id, r.Name)
	}
	return nil
}

// Destroy removes an EC2 host and terminates its instance.
func (o *Ops) Destroy(ctx context.Context, name string, out func(string)) error {
	h, err := o.Store.GetHost(ctx, name)
	if err != nil {
		return err
	}
	if h.Provider != "ec2" {
		return fmt.Errorf("host %s was added over SSH, not created on EC2: remove it with hosts remove %s", name, name)
	}
	// The client first: a host removed whose instance cannot then be
	// terminated would be forgotten while it still costs money.
	e, err := cloud.NewEC2(ctx, cloud.EC2Config{Region: h.Region, Endpoint: o.EC2Endpoint})
	if err != nil {
		return err
	}
	if err := o.Remove(ctx, name, out); err != nil {
		return err
	}
	if err := e.Terminate(ctx, h.InstanceID); err != nil {
		return err
	}
	out(fmt.Sprintf("=====> Instance %s terminated", h.InstanceID))
	return nil
}

// Route makes a remote host's container subnet reachable from this box
// (where HAProxy runs): each host routes its own containers.
func Route(h store.Host) error {
	if h.Provider == "local" || h.Address == "" {
		return nil
	}
	if out, err := exec.Command("ip", "route", "replace", h.Subnet, "via", h.Address).CombinedOutput(); err != nil {
		return fmt.Errorf("routing %s via %s: %v: %s", h.Subnet, h.Address, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// RouteSource is the address this box's packets to addr leave from: the
// router's source as the host sees it, the one its containers accept
// connections from. "" if there is no route.
func RouteSource(addr string) string {
	out, err := exec.Command("ip", "-o", "route", "get", addr).Output()
	if err != nil {
		return ""
	}
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "src" {
			return f[i+1]
		}
	}
	return ""
}

// Unroute removes Route's route.
func Unroute(h store.Host) {
	if h.Provider != "local" && h.Address != "" {
		exec.Command("ip", "route", "del", h.Subnet, "via", h.Address).Run()
	}
}

func splitHostPort(addr string) (string, string, error) {
	if addr == "" {
		return "", "", errors.New("which host? give --host ADDRESS")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = addr, "22"
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.String()
	} else if names.Check("host", strings.ReplaceAll(host, ".", "-")) != nil {
		return "", "", fmt.Errorf("invalid host address %s", names.Quote(addr))
	}
	return host, port, nil
}
