package e2e

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/upscalehq/upscale/e2e/rig"
)

// probePy tries each HOST:PORT argument and what a hostile app would try
// next to it, printing one "WHAT reached|blocked" or "WHAT allowed|refused"
// line each.
const probePy = `import fcntl, socket, struct, sys
for t in sys.argv[1:]:
    host, port = t.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        print(t, "reached")
    except OSError:
        print(t, "blocked")
def attempt(name, f):
    try:
        f()
        print(name, "allowed")
    except OSError:
        print(name, "refused")
attempt("raw-socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
attempt("packet-socket", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806)))
def add_address():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fcntl.ioctl(s, 0x8916, struct.pack("16sH2s4s8s", b"eth0", socket.AF_INET, bytes(2), socket.inet_aton("10.1.2.3"), bytes(8)))
attempt("add-address", add_address)
`

// From inside a container of namespace acme: another namespace's container,
// another app of its own namespace, a service of the host on every address
// (as sshd on 22, or the server's ports on the server box), the host's
// gateway address, a link-local address like the cloud metadata one; and
// a raw socket, a packet socket (gratuitous ARP), a new address. All fail,
// and both apps still serve through the router. Before, everything
// succeeded.
func TestContainerIsolationRegression(t *testing.T) {
	d := newDeployWorld(t)
	d.ssh(t, "namespace", "create", "globex")
	d.ssh(t, "app", "create", "globex/web")
	files := helloApp(t, "acme", "runtime: python\n")
	files["probe.py"] = probePy
	d.mustPush(t, rig.Repo(t, files), "acme/web")
	d.mustPush(t, rig.Repo(t, helloApp(t, "acme api", "runtime: python\n")), "acme/api")
	d.mustPush(t, rig.Repo(t, helloApp(t, "globex", "runtime: python\n")), "globex/web")

	// A host service on every address, and one on a link-local address.
	all, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	go http.Serve(all, http.NotFoundHandler())
	link := "upse" + fmt.Sprint(all.Addr().(*net.TCPAddr).Port)
	for _, args := range [][]string{{"link", "add", link, "type", "bridge"}, {"addr", "add", "169.254.77.77/32", "dev", link}, {"link", "set", link, "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", link).Run() })
	meta, err := net.Listen("tcp", "169.254.77.77:80")
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close()
	go http.Serve(meta, http.NotFoundHandler())

	port := fmt.Sprint(all.Addr().(*net.TCPAddr).Port)
	gateway := netip.MustParsePrefix(d.srv.Agent.Subnet).Addr().Next().String()
	targets := []string{
		d.ps(t, "globex/web")[0].Addr, // another namespace
		d.ps(t, "acme/api")[0].Addr,   // another app of the same namespace
		gateway + ":" + port,          // the host, on the containers' gateway
		"169.254.77.77:80",            // link-local, where cloud metadata lives
	}
	if a := primaryIPv4(t); a != "" {
		targets = append(targets, a+":"+port) // the host's own address
	}
	out, errs, code := d.srv.SSH(d.key, "", append([]string{"app", "exec", "acme/web", "--", "python3", "probe.py"}, targets...)...)
	if code != 0 {
		t.Fatalf("probe: exit %d\n%s%s", code, out, errs)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		what, verdict, _ := strings.Cut(line, " ")
		got[what] = verdict
	}
	for _, target := range targets {
		if got[target] != "blocked" {
			t.Errorf("from acme/web: %s %s", target, got[target])
		}
	}
	for _, what := range []string{"raw-socket", "packet-socket", "add-address"} {
		if got[what] != "refused" {
			t.Errorf("from acme/web: %s %s", what, got[what])
		}
	}
	d.mustServe(t, "acme/web", "acme\n")
	if code, body, err := d.srv.Get("globex/web", "/"); code != 200 || body != "globex\n" {
		t.Errorf("globex/web through the router: %d %q %v", code, body, err)
	}
}

// primaryIPv4 is this machine's first non-loopback IPv4 address.
func primaryIPv4(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ip, ok := a.(*net.IPNet); ok && ip.IP.To4() != nil && !ip.IP.IsLoopback() && !ip.IP.IsLinkLocalUnicast() {
			return ip.IP.String()
		}
	}
	return ""
}
