// Package hostagent is the logic of upscale-agent, the process on every
// host. For now it describes the host it runs on.
package hostagent

import (
	"bufio"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/upscalehq/upscale/agentapi"
)

// Local describes the machine this process runs on.
func Local(address string) agentapi.Info {
	name, _ := os.Hostname()
	info := agentapi.Info{Name: name, Address: address, State: "up", CPUs: runtime.NumCPU()}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		info.MemTotal, info.MemFree = ParseMeminfo(f)
		f.Close()
	}
	return info
}

// ParseMeminfo reads MemTotal and MemAvailable (in bytes) from a
// /proc/meminfo listing.
func ParseMeminfo(r io.Reader) (total, available uint64) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		kb, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "MemTotal:":
			total = kb * 1024
		case "MemAvailable:":
			available = kb * 1024
		}
	}
	return total, available
}
