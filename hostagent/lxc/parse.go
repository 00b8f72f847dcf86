package lxc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// parseResolvConf returns the nameservers of a resolv.conf that a container
// can reach: loopback resolvers (systemd-resolved's 127.0.0.53, a local
// dnsmasq) and link-local ones live in the host's namespace only.
func parseResolvConf(data []byte) []string {
	var out []string
	seen := map[netip.Addr]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil || a.Zone() != "" {
			continue
		}
		a = a.Unmap()
		if a.IsLoopback() || a.IsUnspecified() || a.IsLinkLocalUnicast() || a.IsMulticast() || seen[a] {
			continue
		}
		seen[a] = true
		out = append(out, a.String())
	}
	return out
}

// parseExitCode reads the status the launcher wrote. The file lives in the
// container's writable layer, so anything but a plain 0..255 is "unknown".
func parseExitCode(data []byte) (int, bool) {
	s := strings.TrimSpace(string(data))
	if s == "" || len(s) > 3 {
		return -1, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 255 || strconv.Itoa(n) != s {
		return -1, false
	}
	return n, true
}

// parseCount reads a count the launcher wrote (OOM kills): a plain
// decimal below 2^31, as written by the container's shell, or not ok.
func parseCount(data []byte) (int, bool) {
	s := strings.TrimSpace(string(data))
	if s == "" || len(s) > 10 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 1<<31-1 || strconv.Itoa(n) != s {
		return 0, false
	}
	return n, true
}

// meta is what the runtime keeps next to each container's LXC config: the
// address (so a restarted agent never hands it out twice) and what LXC does
// not know.
type meta struct {
	Name     string     `json:"name"`
	IP       netip.Addr `json:"ip"`
	Image    string     `json:"image"`
	Hostname string     `json:"hostname"`
	// IDMapBase is the container's id range; 0 in containers made before
	// each had its own (they are in the runtime's).
	IDMapBase uint32    `json:"idmap_base,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	StartedAt time.Time `json:"started_at,omitzero"`
	// ExitCode is the status the runtime itself observed (137 when Stop had
	// to SIGKILL), used when the launcher could not write one; -1 unknown.
	ExitCode int `json:"exit_code"`
}

func decodeMeta(data []byte) (meta, error) {
	var m meta
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return meta{}, err
	}
	if err := validName(m.Name); err != nil {
		return meta{}, err
	}
	if !m.IP.Is4() {
		return meta{}, fmt.Errorf("ip %q is not an IPv4 address", m.IP)
	}
	if m.ExitCode < -1 || m.ExitCode > 255 {
		return meta{}, fmt.Errorf("exit code %d out of range", m.ExitCode)
	}
	return m, nil
}

// lastLines splits the end of a log into at most n lines (n <= 0: all).
// partialStart says buf begins mid-file, so its first line may be a tail
// of a longer one and is dropped unless it is all there is. A final line
// without a newline is kept: it is output the app has written so far.
func lastLines(buf []byte, n int, partialStart bool) []string {
	if partialStart {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	if len(buf) == 0 {
		return nil
	}
	buf = bytes.TrimSuffix(buf, []byte("\n"))
	lines := strings.Split(string(buf), "\n")
	if n > 0 && len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}
