package router

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/upscalehq/upscale/msgtext"
)

// Parsers for HAProxy 2.6 runtime API answers. They are strict about what
// they use and ignore the rest, so that a newer HAProxy adding columns
// keeps working; anything malformed is an error, never a guess.

// procs is the master CLI's "show proc".
type procs struct {
	masterPID int
	reloads   int // reloads the master has done, failed ones included
	failed    int // failed reloads since the last successful one
	worker    int // the current worker; 0 while there is none
	old       []int
}

func parseProc(s string) (procs, error) {
	var p procs
	section := ""
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if strings.HasPrefix(f[0], "#") {
			section = strings.TrimSpace(strings.TrimLeft(line, "#"))
			continue
		}
		if len(f) < 3 {
			return procs{}, fmt.Errorf("show proc: malformed line %q", line)
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil || pid <= 0 {
			return procs{}, fmt.Errorf("show proc: bad pid in %q", line)
		}
		switch {
		case f[1] == "master":
			p.masterPID = pid
			if p.reloads, err = strconv.Atoi(f[2]); err != nil {
				return procs{}, fmt.Errorf("show proc: bad reload count in %q", line)
			}
			if _, after, ok := strings.Cut(line, "[failed:"); ok {
				n, _, _ := strings.Cut(after, "]")
				if p.failed, err = strconv.Atoi(strings.TrimSpace(n)); err != nil {
					return procs{}, fmt.Errorf("show proc: bad failed count in %q", line)
				}
			}
		case f[1] == "worker" && section == "workers":
			if p.worker != 0 {
				return procs{}, fmt.Errorf("show proc: two current workers")
			}
			p.worker = pid
		case f[1] == "worker" && section == "old workers":
			p.old = append(p.old, pid)
		}
	}
	if p.masterPID == 0 {
		return procs{}, fmt.Errorf("show proc: no master in %q", truncate(s))
	}
	return p, nil
}

// runServer is one row of "show servers state".
type runServer struct {
	backend, name string
	serverState
}

// parseServersState reads "show servers state": a format version line, a
// "# " header naming the columns, then one space-separated row per server.
func parseServersState(s string) ([]runServer, error) {
	lines := nonEmptyLines(s)
	if len(lines) == 0 {
		return nil, fmt.Errorf("show servers state: empty answer")
	}
	if lines[0] != "1" {
		return nil, fmt.Errorf("show servers state: unknown format %q", truncate(lines[0]))
	}
	if len(lines) < 2 || !strings.HasPrefix(lines[1], "# ") {
		return nil, fmt.Errorf("show servers state: no header")
	}
	col, err := columns(strings.Fields(lines[1][2:]), "be_name", "srv_name", "srv_addr", "srv_port", "srv_admin_state")
	if err != nil {
		return nil, fmt.Errorf("show servers state: %w", err)
	}
	var out []runServer
	for _, l := range lines[2:] {
		f := strings.Fields(l)
		if len(f) <= col.max {
			return nil, fmt.Errorf("show servers state: short row %q", truncate(l))
		}
		addr, err := netip.ParseAddr(f[col.idx["srv_addr"]])
		if err != nil {
			return nil, fmt.Errorf("show servers state: bad address in %q", truncate(l))
		}
		port, err := strconv.ParseUint(f[col.idx["srv_port"]], 10, 16)
		if err != nil {
			return nil, fmt.Errorf("show servers state: bad port in %q", truncate(l))
		}
		admin, err := strconv.ParseUint(f[col.idx["srv_admin_state"]], 10, 16)
		if err != nil {
			return nil, fmt.Errorf("show servers state: bad admin state in %q", truncate(l))
		}
		out = append(out, runServer{
			backend:     f[col.idx["be_name"]],
			name:        f[col.idx["srv_name"]],
			serverState: serverState{addr: netip.AddrPortFrom(addr.Unmap(), uint16(port)).String(), admin: int(admin)},
		})
	}
	return out, nil
}

// parseSessions reads "show stat" CSV and returns the current sessions of
// each server, keyed "backend/server".
func parseSessions(s string) (map[string]int, error) {
	lines := nonEmptyLines(s)
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "# ") {
		return nil, fmt.Errorf("show stat: no header")
	}
	col, err := columns(strings.Split(lines[0][2:], ","), "pxname", "svname", "scur")
	if err != nil {
		return nil, fmt.Errorf("show stat: %w", err)
	}
	out := map[string]int{}
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		if len(f) <= col.max {
			return nil, fmt.Errorf("show stat: short row %q", truncate(l))
		}
		px, sv := f[col.idx["pxname"]], f[col.idx["svname"]]
		if sv == "FRONTEND" || sv == "BACKEND" {
			continue
		}
		n, err := strconv.Atoi(f[col.idx["scur"]])
		if err != nil || n < 0 {
			return nil, fmt.Errorf("show stat: bad scur in %q", truncate(l))
		}
		out[px+"/"+sv] = n
	}
	return out, nil
}

type mapEntry struct{ key, value string }

// parseMap reads "show map FILE": "POINTER KEY VALUE" per entry, in map
// order. A key may appear twice: "add map" does not replace.
func parseMap(s string) ([]mapEntry, error) {
	var out []mapEntry
	for _, l := range nonEmptyLines(s) {
		f := strings.Fields(l)
		if len(f) != 3 || !strings.HasPrefix(f[0], "0x") {
			return nil, fmt.Errorf("show map: malformed entry %q", truncate(l))
		}
		out = append(out, mapEntry{f[1], f[2]})
	}
	return out, nil
}

// parseBackends reads "show backend": a "# name" header, then one name a line.
func parseBackends(s string) ([]string, error) {
	lines := nonEmptyLines(s)
	if len(lines) == 0 || lines[0] != "# name" {
		return nil, fmt.Errorf("show backend: no header in %q", truncate(s))
	}
	var out []string
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) != 1 || f[0] != l {
			return nil, fmt.Errorf("show backend: malformed name %q", truncate(l))
		}
		out = append(out, l)
	}
	return out, nil
}

type cols struct {
	idx map[string]int
	max int
}

func columns(header []string, want ...string) (cols, error) {
	c := cols{idx: map[string]int{}}
	for _, w := range want {
		i := -1
		for j, h := range header {
			if h == w {
				i = j
				break
			}
		}
		if i < 0 {
			return cols{}, fmt.Errorf("no column %s", w)
		}
		c.idx[w] = i
		c.max = max(c.max, i)
	}
	return c, nil
}

func nonEmptyLines(s string) []string {
	var out []string
	for l := range strings.Lines(s) {
		if l = strings.TrimRight(l, "\r\n"); strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// truncate keeps error messages about a huge answer readable.
func truncate(s string) string { return msgtext.Truncate(s, 200) }
