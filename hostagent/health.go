package hostagent

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// What fails a start before its health timeout, where waiting longer
// would not help (docs/deploys.md):
const (
	// errorStatusFor: the health check answered an error status (503
	// aside, which says "not ready yet") for this long without a break.
	errorStatusFor = 3 * time.Second
	// loopbackFor: the app listened on its port on loopback only, where
	// the router cannot reach it, for this long.
	loopbackFor = time.Second
)

// streak is how long a condition has held without a break.
type streak struct{ since time.Time }

// hold notes whether the condition holds now and reports whether it has
// for at least d.
func (s *streak) hold(on bool, d time.Duration) bool {
	if !on {
		s.since = time.Time{}
		return false
	}
	if s.since.IsZero() {
		s.since = time.Now()
	}
	return time.Since(s.since) >= d
}

// loopbackOnly reports whether, in the network namespace of the host
// process pid (a container's init), something listens on port on a
// loopback address and nothing on any other address: an app bound to
// 127.0.0.1, which the router cannot reach.
func loopbackOnly(pid, port int) bool {
	if pid <= 0 {
		return false
	}
	var loop, other bool
	for _, f := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		for _, a := range parseListeners(data) {
			if int(a.Port()) != port {
				continue
			}
			if a.Addr().Unmap().IsLoopback() {
				loop = true
			} else {
				other = true
			}
		}
	}
	return loop && !other
}

// parseListeners reads the listening sockets of /proc/net/tcp or tcp6:
// "sl local_address rem_address st ...", addresses as hex words in host
// (little-endian) byte order, state 0A for LISTEN.
func parseListeners(data []byte) []netip.AddrPort {
	var out []netip.AddrPort
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[3] != "0A" {
			continue
		}
		host, port, ok := strings.Cut(f[1], ":")
		p, err := strconv.ParseUint(port, 16, 16)
		raw, herr := hex.DecodeString(host)
		if !ok || err != nil || herr != nil || (len(raw) != 4 && len(raw) != 16) {
			continue
		}
		// Each 32-bit word is in the kernel's byte order.
		for i := 0; i+4 <= len(raw); i += 4 {
			binary.BigEndian.PutUint32(raw[i:], binary.LittleEndian.Uint32(raw[i:]))
		}
		addr, _ := netip.AddrFromSlice(raw)
		out = append(out, netip.AddrPortFrom(addr, uint16(p)))
	}
	return out
}
