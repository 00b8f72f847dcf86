package lxc

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// peer is a network namespace with one veth into this host: a stand-in for
// a container that kept every capability (and forges what it sends), or for
// another machine (a router, a server outside). ip(8) configures it.
type peer struct {
	t    *testing.T
	ns   string
	link string // the veth end in the root namespace; the other is eth0
}

func newPeer(t *testing.T, link string) *peer {
	t.Helper()
	p := &peer{t: t, ns: "upsp" + randHex(4), link: link}
	mustIP(t, "netns", "add", p.ns)
	t.Cleanup(func() {
		if out, _ := exec.Command("ip", "netns", "pids", p.ns).Output(); len(out) > 0 {
			for _, pid := range strings.Fields(string(out)) {
				exec.Command("kill", "-9", pid).Run()
			}
		}
		exec.Command("ip", "link", "del", p.link).Run()
		exec.Command("ip", "netns", "del", p.ns).Run()
	})
	mustIP(t, "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", p.ns)
	mustIP(t, "link", "set", link, "up")
	p.ip("link", "set", "lo", "up")
	p.ip("link", "set", "eth0", "up")
	return p
}

func mustIP(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func (p *peer) ip(args ...string) {
	p.t.Helper()
	mustIP(p.t, append([]string{"-n", p.ns}, args...)...)
}

// get fetches url from inside the peer: its body, or "blocked".
func (p *peer) get(url string) string {
	bb, err := staticBusybox()
	if err != nil {
		p.t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", p.ns, "timeout", "3", bb, "wget", "-q", "-O", "-", url).Output()
	if err != nil {
		return "blocked"
	}
	return strings.TrimSpace(string(out))
}

// serve runs busybox httpd in the peer on port, answering /who with who.
func (p *peer) serve(port int, who string) {
	bb, err := staticBusybox()
	if err != nil {
		p.t.Fatal(err)
	}
	dir := p.t.TempDir()
	os.WriteFile(filepath.Join(dir, "who"), []byte(who+"\n"), 0o644)
	cmd := exec.Command("ip", "netns", "exec", p.ns, bb, "httpd", "-f", "-p", fmt.Sprint(port), "-h", dir)
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

// pointToPoint links the peer to this host with a /30 of 10.202.X.0 and
// routes what the peer sends via this host; it returns the host's and the
// peer's addresses.
func (p *peer) pointToPoint() (host, inside netip.Addr) {
	b := []byte(randHex(1))
	base := netip.AddrFrom4([4]byte{10, 202, b[0], 4 * (b[1] % 60)})
	host, inside = base.Next(), base.Next().Next()
	mustIP(p.t, "addr", "add", host.String()+"/30", "dev", p.link)
	p.ip("addr", "add", inside.String()+"/30", "dev", "eth0")
	p.ip("route", "add", "default", "via", host.String())
	return host, inside
}

// A container sends only with the address and MAC it was given, on its own
// port: a forged source address, a forged MAC and a gratuitous ARP for
// another container's address are dropped, while its true ones pass. The
// peer stands in for an app that regained NET_ADMIN and NET_RAW.
func TestSpoofedFramesDroppedRegression(t *testing.T) {
	outside := newPeer(t, "upso"+randHex(3))
	_, server := outside.pointToPoint()
	outside.serve(8080, "outside")
	allow, err := ParseEgress(server.String() + ":8080")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(cfg *Config) { cfg.EgressAllow = []Egress{allow} })
	b := e.create(e.spec("b", `echo b > /app/who; exec httpd -f -p "$PORT" -h /app`))
	e.start("b")
	bURL := fmt.Sprintf("http://%s:8080/who", b.IP)
	if got, _ := httpGet(t, bURL, 10*time.Second); got != "b\n" {
		t.Fatalf("b: %q", got)
	}

	// The forger's port, registered as a container's would be.
	veth := vethName(e.cfg.Bridge, "forger", randHex(4))
	forger := newPeer(t, veth)
	mustIP(t, "link", "set", veth, "master", e.cfg.Bridge)
	a := e.cfg.Subnet.Addr().As4()
	a[3] = 200 // far from b, the env's only container
	own := netip.AddrFrom4(a)
	ownMAC := macFor(own)
	if err := e.rt.setPort(true, portElement(veth, ownMAC, own)); err != nil {
		t.Fatal(err)
	}
	gw := e.cfg.Subnet.Addr().Next().String()
	become := func(addr netip.Addr, mac string) {
		forger.ip("addr", "flush", "dev", "eth0")
		forger.ip("link", "set", "eth0", "address", mac)
		forger.ip("addr", "add", addr.String()+"/24", "dev", "eth0")
		forger.ip("route", "replace", "default", "via", gw)
		exec.Command("ip", "neigh", "flush", "dev", e.cfg.Bridge).Run()
	}
	outsideURL := fmt.Sprintf("http://%s:8080/who", server)

	become(own, ownMAC)
	if got := forger.get(outsideURL); got != "outside" {
		t.Fatalf("with its own address and MAC, the port does not reach outside: %q", got)
	}
	become(own.Next(), ownMAC)
	if got := forger.get(outsideURL); got != "blocked" {
		t.Errorf("from a forged address %s: %q", own.Next(), got)
	}
	become(own, "02:00:00:aa:bb:cc")
	if got := forger.get(outsideURL); got != "blocked" {
		t.Errorf("from a forged MAC: %q", got)
	}

	// A gratuitous ARP for b's address, sent from the port's own MAC,
	// would move the host's traffic for b to the forger.
	become(own, ownMAC)
	bb, _ := staticBusybox()
	time.Sleep(1100 * time.Millisecond) // past the neighbour entry's locktime, so an ARP could override it
	if out, err := exec.Command("ip", "netns", "exec", forger.ns, bb, "arping", "-U", "-c", "2", "-I", "eth0", "-s", b.IP.String(), b.IP.String()).CombinedOutput(); err != nil {
		t.Logf("arping: %v: %s", err, out)
	}
	if out, _ := exec.Command("ip", "neigh", "show", b.IP.String(), "dev", e.cfg.Bridge).Output(); strings.Contains(string(out), ownMAC) {
		t.Errorf("the host took the forger's MAC for b: %s", out)
	}
	if got, _ := httpGet(t, bURL, 10*time.Second); got != "b\n" {
		t.Errorf("b after the forged ARP: %q", got)
	}
}

// From another machine, only a router (IngressAllow) opens connections to
// the containers; before, anything that could route to the host reached
// every container on every port.
func TestIngressOnlyFromRoutersRegression(t *testing.T) {
	router := newPeer(t, "upsr"+randHex(3))
	_, routerAddr := router.pointToPoint()
	open := newEnv(t, func(cfg *Config) { cfg.IngressAllow = []netip.Prefix{netip.PrefixFrom(routerAddr, 32)} })
	closed := newEnv(t, nil)
	var urls []string
	for _, e := range []*testEnv{open, closed} {
		c := e.create(e.spec("web", `echo web > /app/who; exec httpd -f -p "$PORT" -h /app`))
		e.start("web")
		url := fmt.Sprintf("http://%s:8080/who", c.IP)
		if got, _ := httpGet(t, url, 10*time.Second); got != "web\n" {
			t.Fatalf("this host does not reach %s: %q", c.IP, got)
		}
		urls = append(urls, url)
	}
	if got := router.get(urls[0]); got != "web" {
		t.Errorf("the router does not reach a container that allows it: %q", got)
	}
	if got := router.get(urls[1]); got != "blocked" {
		t.Errorf("another machine reached a container: %q", got)
	}
	// A router learnt later (an EC2 host hears of it in status calls).
	if err := closed.rt.AllowIngress(netip.PrefixFrom(routerAddr, 32)); err != nil {
		t.Fatal(err)
	}
	if got := router.get(urls[1]); got != "web" {
		t.Errorf("the router allowed later does not reach the container: %q", got)
	}
}
