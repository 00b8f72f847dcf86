package lxc

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// ensureBridge creates the bridge if missing and gives it the gateway
// address. `ip` rather than netlink code: it is on every Debian host and
// runs once per agent start.
func ensureBridge(name string, gw netip.Addr, bits int) error {
	if _, err := net.InterfaceByName(name); err != nil {
		if out, err := run("ip", "link", "add", name, "type", "bridge"); err != nil && !strings.Contains(out, "File exists") {
			return err
		}
	}
	// A bridge without an address of its own takes the lowest MAC of its
	// ports, which changes as containers come and go; running containers
	// keep the old gateway MAC in their ARP cache and their replies go
	// nowhere until it expires. A fixed address, also on an existing
	// bridge (agents before this one did not set it).
	if _, err := run("ip", "link", "set", name, "address", bridgeMAC(name)); err != nil {
		return err
	}
	if _, err := run("ip", "addr", "replace", fmt.Sprintf("%s/%d", gw, bits), "dev", name); err != nil {
		return err
	}
	_, err := run("ip", "link", "set", name, "up")
	return err
}

// bridgeMAC is a stable locally administered unicast MAC for the bridge,
// derived from its name.
func bridgeMAC(name string) string {
	h := sha256.Sum256([]byte("upscale bridge " + name))
	h[0] = h[0]&0xfc | 0x02
	return net.HardwareAddr(h[:6]).String()
}

// natTable is the nftables table name of one bridge's rules, in the ip
// (masquerade), inet (filter) and bridge families: tables of their own, so
// setting them up is idempotent and removal cannot touch anything else.
// Table names cannot contain '-'.
func natTable(bridge string) string {
	return "upscale_" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, bridge)
}

// privateRanges are what a container may not reach: the hosts' own and
// private networks (other hosts, their containers, the server), loopback,
// link-local (cloud metadata at 169.254.169.254), shared and reserved
// space, multicast.
var privateRanges = []string{"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
	"172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4"}

// Egress is a destination containers may reach although it is in a
// private range (an external database): a network, and one TCP/UDP port
// or all of them (Port 0).
type Egress struct {
	Net  netip.Prefix
	Port uint16
}

func (e Egress) String() string {
	if e.Port == 0 {
		return e.Net.String()
	}
	return e.Net.String() + ":" + strconv.Itoa(int(e.Port))
}

// ParseEgress reads CIDR[:PORT] (a bare address is a /32), as the agent's
// --egress-allow takes it.
func ParseEgress(s string) (Egress, error) {
	addr, port, hasPort := strings.Cut(s, ":")
	var e Egress
	if hasPort {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 || strconv.FormatUint(n, 10) != port {
			return Egress{}, fmt.Errorf("egress %q: the port must be 1-65535", s)
		}
		e.Port = uint16(n)
	}
	if !strings.Contains(addr, "/") {
		addr += "/32"
	}
	p, err := netip.ParsePrefix(addr)
	if err != nil || !p.Addr().Is4() {
		return Egress{}, fmt.Errorf("egress %q: want an IPv4 network such as 10.0.5.0/24 or 10.0.5.7:5432", s)
	}
	e.Net = p.Masked()
	return e, nil
}

// firewall is the nft script that confines a bridge's containers: they
// reach the outside world (masqueraded when nat), their DNS servers and
// the allowed destinations, and nothing else: no other container (frames
// between containers' ports are dropped, same namespace or not), no address of
// this host, no private or link-local network, no IPv6. From outside this
// host, only the routers (cfg.IngressAllow) open connections to them; this
// host's own connections (router, health checks) do not cross the forward
// hook. A container's frames carry the MAC and source address it was given
// on the port it was given (set ports), or are dropped: no spoofing even
// with a capability it should not have. Declare, delete, recreate: one
// atomic transaction whether or not the tables existed, so an agent restart
// puts exactly these rules back, with the ports of the containers it has.
func firewall(cfg Config, ports []string) string {
	t := natTable(cfg.Bridge)
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %[1]s\ndelete table ip %[1]s\ntable inet %[1]s\ndelete table inet %[1]s\ntable bridge %[1]s\ndelete table bridge %[1]s\n", t)
	if cfg.NAT {
		fmt.Fprintf(&b, `table ip %[1]s {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr %[2]s ip daddr != %[2]s masquerade
	}
}
`, t, cfg.Subnet)
	}
	var v4 []string
	for _, d := range cfg.DNS {
		if a, err := netip.ParseAddr(d); err == nil && a.Is4() {
			v4 = append(v4, a.String())
		}
	}
	dns := ""
	if len(v4) > 0 {
		set := "{ " + strings.Join(v4, ", ") + " }"
		dns = fmt.Sprintf("\t\tip daddr %[1]s udp dport 53 accept\n\t\tip daddr %[1]s tcp dport 53 accept\n", set)
	}
	allow := ""
	for _, e := range cfg.EgressAllow {
		if e.Port == 0 {
			allow += fmt.Sprintf("\t\tip daddr %s accept\n", e.Net)
		} else {
			allow += fmt.Sprintf("\t\tip daddr %[1]s tcp dport %[2]d accept\n\t\tip daddr %[1]s udp dport %[2]d accept\n", e.Net, e.Port)
		}
	}
	routers := ""
	for _, p := range cfg.IngressAllow {
		routers += fmt.Sprintf("\t\tip saddr %s tcp flags & (syn | ack) == syn accept\n", p)
	}
	elements := ""
	if len(ports) > 0 {
		elements = "\t\telements = { " + strings.Join(ports, ", ") + " }\n"
	}
	fmt.Fprintf(&b, `table inet %[1]s {
	chain input {
		type filter hook input priority filter; policy accept;
		iifname %[2]q jump to_host
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname %[2]q jump outbound
		oifname %[2]q jump inbound
	}
	chain to_host {
		ct state established,related accept
%[3]s		drop
	}
	chain outbound {
		ct state established,related accept
		meta nfproto ipv6 drop
%[3]s%[4]s		ip daddr { %[5]s } drop
		accept
	}
	chain inbound {
		ct state established,related accept
%[7]s		drop
	}
}
table bridge %[1]s {
	set ports {
		type ifname . ether_addr . ipv4_addr
%[8]s	}
	chain prerouting {
		type filter hook prerouting priority filter; policy accept;
		iifname "%[9]s*" jump from_container
	}
	chain from_container {
		iifname . ether saddr . ip saddr @ports accept
		iifname . ether saddr . arp saddr ip @ports iifname . arp saddr ether . arp saddr ip @ports accept
		drop
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "%[6]s*" drop
	}
}
`, t, cfg.Bridge, dns, allow, strings.Join(privateRanges, ", "), vethPrefix, routers, elements, portPrefix(cfg.Bridge))
	return b.String()
}

// portElement is a container's entry in the bridge table's ports set: the
// host side of its veth, its MAC, its address.
func portElement(veth, mac string, ip netip.Addr) string {
	return fmt.Sprintf("%q . %s . %s", veth, mac, ip)
}

func (r *Runtime) port(c *ctr) string {
	return portElement(vethName(r.cfg.Bridge, r.cfg.LXCPath, c.name), macFor(c.meta.IP), c.meta.IP)
}

// macFor is a container's MAC, derived from its address: stable across
// restarts, so neighbours' ARP caches stay right.
func macFor(ip netip.Addr) string {
	a := ip.As4()
	return fmt.Sprintf("00:16:3e:%02x:%02x:%02x", a[1], a[2], a[3])
}

// setPort adds (add) or removes a port element (portElement) from the
// set of frames that may leave a container.
func (r *Runtime) setPort(add bool, element string) error {
	verb := "delete"
	if add {
		verb = "add"
	}
	out, err := run("nft", verb, "element", "bridge", natTable(r.cfg.Bridge), "ports", "{ "+element+" }")
	if err != nil && !add && strings.Contains(out, "No such file") {
		return nil
	}
	return err
}

// vethPrefix starts the host side of every container's veth. A frame that
// the bridge forwards from such a port can only be going to another
// container (the host's own traffic enters the bridge, it is not
// forwarded), so one rule drops them all, on whichever bridge; the
// kernel here has no bridge-name match (nft_meta_bridge) to scope it.
const vethPrefix = "upsv"

// portPrefix starts the veths of one bridge's containers: vethPrefix and a
// tag of the bridge's name. It scopes the bridge's anti-spoofing rules to
// its own ports without a bridge-name match; two bridges of one host
// sharing a tag (1 in 32,768) would drop each other's frames, never pass
// them.
func portPrefix(bridge string) string {
	return vethPrefix + b32("upscale bridge ports " + bridge)[:3]
}

// vethName is a container's host-side veth: its bridge's portPrefix and a
// hash unique per lxcpath and name, within the 15 bytes an interface name
// has.
func vethName(bridge, lxcpath, name string) string {
	p := portPrefix(bridge)
	return p + b32(lxcpath + "\x00" + name)[:15-len(p)]
}

// b32 is a hash of s in lower-case base32: letters and digits, as
// interface names allow.
func b32(s string) string {
	h := sha256.Sum256([]byte(s))
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:]))
}

func ensureFirewall(cfg Config, ports []string) error {
	if cfg.NAT {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
			return fmt.Errorf("enable forwarding: %w", err)
		}
	}
	path, err := exec.LookPath("nft")
	if err != nil {
		return errors.New("nft is required to isolate containers (apt-get install nftables)")
	}
	cmd := exec.Command(path, "-f", "-")
	cmd.Stdin = strings.NewReader(firewall(cfg, ports))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// AllowIngress lets connections from p (a router) reach the containers,
// as Config.IngressAllow does, from now on.
func (r *Runtime) AllowIngress(p netip.Prefix) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if slices.Contains(r.cfg.IngressAllow, p) || slices.Contains(r.ingress, p) {
		return nil
	}
	// r.cfg stays as New made it: it is read without the lock.
	cfg := r.cfg
	cfg.IngressAllow = append(slices.Clone(cfg.IngressAllow), append(r.ingress, p)...)
	var ports []string
	for _, c := range r.ctrs {
		ports = append(ports, r.port(c))
	}
	if err := ensureFirewall(cfg, ports); err != nil {
		return fmt.Errorf("lxc: firewall: %w", err)
	}
	r.ingress = append(r.ingress, p)
	return nil
}

// RemoveNetwork deletes the bridge and the nftables rules New set up, for
// uninstalling and for tests. Containers still attached lose their
// network.
func (r *Runtime) RemoveNetwork() error {
	var errs []error
	if _, err := exec.LookPath("nft"); err == nil {
		for _, family := range []string{"ip", "inet", "bridge"} {
			if out, err := run("nft", "delete", "table", family, natTable(r.cfg.Bridge)); err != nil && !strings.Contains(out, "No such file") {
				errs = append(errs, err)
			}
		}
	}
	if _, err := net.InterfaceByName(r.cfg.Bridge); err == nil {
		if _, err := run("ip", "link", "del", r.cfg.Bridge); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}
