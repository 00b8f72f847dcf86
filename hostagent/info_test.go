package hostagent

import (
	"strings"
	"testing"
)

func TestParseMeminfo(t *testing.T) {
	in := "MemTotal:       24567896 kB\nMemFree:        23000000 kB\nMemAvailable:   23500000 kB\nbogus\nHugePages_Total:       0\n"
	total, avail := ParseMeminfo(strings.NewReader(in))
	if total != 24567896*1024 || avail != 23500000*1024 {
		t.Fatalf("got total=%d available=%d", total, avail)
	}
	if total, avail := ParseMeminfo(strings.NewReader("")); total != 0 || avail != 0 {
		t.Fatalf("empty input gave %d %d", total, avail)
	}
}

func TestLocalDescribesThisMachine(t *testing.T) {
	info := Local("10.0.0.1")
	if info.Name == "" || info.CPUs < 1 || info.Address != "10.0.0.1" || info.State != "up" {
		t.Fatalf("Local() = %+v", info)
	}
	if info.MemTotal == 0 || info.MemFree > info.MemTotal {
		t.Fatalf("memory figures wrong: %+v", info)
	}
}
