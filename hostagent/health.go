package hostagent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/upscalehq/upscale/agentapi"
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

// waitHealthy polls until the app answers, its container stops (a crash:
// the error carries its last lines of output), or the time is up.
func (a *Agent) waitHealthy(ctx context.Context, req agentapi.StartRequest, addr string) error {
	timeout := req.HealthTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if req.Worker {
		return a.waitRunning(ctx, req.Name)
	}
	client := &http.Client{Timeout: 2 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	lastErr := "it did not answer"
	begin := time.Now()
	var erring, loopback streak
	_, portText, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portText)
	for {
		// Most apps answer within a few hundred ms of starting: poll
		// closely then, gently after.
		delay := 5 * time.Millisecond
		if time.Since(begin) > 2*time.Second {
			delay = 50 * time.Millisecond
		}
		c, err := a.rt.Get(req.Name)
		if err == nil && c.State != "running" {
			why := ""
			if c.ExitCode == 137 && req.Memory > 0 {
				why = fmt.Sprintf(": killed, most likely for using more than its memory limit of %d MiB", req.Memory>>20)
			}
			return fmt.Errorf("the app exited (status %d%s) before it answered on port %d%s", c.ExitCode, why, agentapi.Port, a.tail(req.Name))
		}
		answered := false
		var status string
		if req.Health == "" {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.Close()
				return nil
			}
			lastErr = "nothing listens on port " + strconv.Itoa(agentapi.Port)
		} else {
			resp, err := client.Get("http://" + addr + req.Health)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode < 400 {
					return nil
				}
				answered = resp.StatusCode != http.StatusServiceUnavailable
				status = resp.Status
				lastErr = fmt.Sprintf("health check %s answered %s", req.Health, resp.Status)
			} else {
				lastErr = "nothing answers HTTP on port " + strconv.Itoa(agentapi.Port)
			}
		}
		// Waiting out the timeout would not help these.
		if erring.hold(answered, errorStatusFor) {
			return fmt.Errorf("health check %s answered %s for %s; it must answer with a status below 400 (503 is waited for)%s", req.Health, status, errorStatusFor, a.tail(req.Name))
		}
		if loopback.hold(!answered && status == "" && err == nil && loopbackOnly(c.PID, port), loopbackFor) {
			return fmt.Errorf("the app listens on port %d on 127.0.0.1 (loopback) only, where the router cannot reach it: make it listen on 0.0.0.0 (all addresses), port $PORT%s", port, a.tail(req.Name))
		}
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), context.Canceled) {
				return ctx.Err()
			}
			return fmt.Errorf("the app was not healthy within %s: %s%s", timeout, lastErr, a.tail(req.Name))
		case <-time.After(delay):
		}
	}
}

// workerSettle is how long a worker must keep running to count as started.
const workerSettle = time.Second

// waitRunning is a worker's health check: still running after workerSettle.
func (a *Agent) waitRunning(ctx context.Context, name string) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(workerSettle):
	}
	c, err := a.rt.Get(name)
	if err != nil {
		return err
	}
	if c.State != "running" {
		return fmt.Errorf("the worker exited (status %d) within %s of starting%s", c.ExitCode, workerSettle, a.tail(name))
	}
	return nil
}
