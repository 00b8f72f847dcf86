package lxc

import (
	"encoding/json"
	"net"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseResolvConf(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"nameserver 10.255.255.53\n", []string{"10.255.255.53"}},
		{"# systemd-resolved\nnameserver 127.0.0.53\noptions edns0\n", nil},
		{"nameserver 1.1.1.1\nnameserver 1.1.1.1\nnameserver ::1\nnameserver 2606:4700::1111\n", []string{"1.1.1.1", "2606:4700::1111"}},
		{"nameserver fe80::1%eth0\nnameserver fe80::1\nnameserver 0.0.0.0\n", nil},
		{"nameserver ::ffff:8.8.8.8\n", []string{"8.8.8.8"}},
		{"search example.com\nnameserver\nnameserver bogus\n\tnameserver   9.9.9.9   # comment\n", []string{"9.9.9.9"}},
		{"", nil},
	} {
		if got := parseResolvConf([]byte(tc.in)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseResolvConf(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseExitCode(t *testing.T) {
	for in, want := range map[string]int{
		"0\n": 0, "3\n": 3, "255": 255, " 143 \n": 143,
		"256": -1, "-1": -1, "": -1, "03": -1, "+3": -1, "1e2": -1, "x": -1, "99999999999999999999": -1,
	} {
		got, ok := parseExitCode([]byte(in))
		if got != want || ok != (want >= 0) {
			t.Errorf("parseExitCode(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
}

func TestParseCount(t *testing.T) {
	for in, want := range map[string]int{"1\n": 1, "0": 0, "2147483647": 1<<31 - 1, "2147483648": -1, "-1": -1, "01": -1, "": -1, "x": -1, "1 2": -1} {
		got, ok := parseCount([]byte(in))
		if !ok {
			got = -1
		}
		if got != want {
			t.Errorf("parseCount(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
}

func TestMetaRoundTrip(t *testing.T) {
	m := meta{Name: "web", IP: netip.MustParseAddr("10.77.0.2"), Image: "/img", Hostname: "web",
		CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), ExitCode: -1}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeMeta(data)
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Errorf("round trip = %+v, %v", got, err)
	}
	for _, bad := range []string{
		`{"name":"../x","ip":"10.0.0.2","exit_code":-1}`,
		`{"name":"web","ip":"::1","exit_code":-1}`,
		`{"name":"web","exit_code":-1}`,
		`{"name":"web","ip":"10.0.0.2","exit_code":300}`,
		`{"name":"web","ip":"10.0.0.2","exit_code":-1,"extra":1}`,
		`not json`,
	} {
		if _, err := decodeMeta([]byte(bad)); err == nil {
			t.Errorf("decodeMeta(%s) accepted", bad)
		}
	}
}

func TestLastLines(t *testing.T) {
	for _, tc := range []struct {
		in      string
		n       int
		partial bool
		want    []string
	}{
		{"a\nb\nc\n", 2, false, []string{"b", "c"}},
		{"a\nb\nc\n", 0, false, []string{"a", "b", "c"}},
		{"a\nb\nc", 5, false, []string{"a", "b", "c"}},
		{"tail-of-a\nb\n", 5, true, []string{"b"}},
		{"only-part", 5, true, []string{"only-part"}},
		{"", 3, false, nil},
		{"\n", 3, false, []string{""}},
		{"a\n\nb\n", 2, false, []string{"", "b"}},
	} {
		if got := lastLines([]byte(tc.in), tc.n, tc.partial); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("lastLines(%q, %d, %v) = %q, want %q", tc.in, tc.n, tc.partial, got, tc.want)
		}
	}
}

func TestAllocIPAndLastHost(t *testing.T) {
	for p, want := range map[string]string{"10.77.0.0/24": "10.77.0.254", "10.1.0.0/16": "10.1.255.254", "10.2.3.8/29": "10.2.3.14"} {
		if got := lastHost(netip.MustParsePrefix(p)); got.String() != want {
			t.Errorf("lastHost(%s) = %s, want %s", p, got, want)
		}
	}
	r := &Runtime{cfg: Config{Subnet: netip.MustParsePrefix("10.2.3.8/29")}, ctrs: map[string]*ctr{}}
	r.gateway = r.cfg.Subnet.Addr().Next()
	r.cursor = r.gateway
	var got []string
	for i := range 5 {
		a, err := r.allocIP()
		if err != nil {
			t.Fatal(err)
		}
		name := string(rune('a' + i))
		r.ctrs[name] = &ctr{name: name, meta: meta{IP: a}}
		r.cursor = a
		got = append(got, a.String())
	}
	if strings.Join(got, " ") != "10.2.3.10 10.2.3.11 10.2.3.12 10.2.3.13 10.2.3.14" {
		t.Errorf("allocated %v", got)
	}
	if _, err := r.allocIP(); err != ErrNoAddress {
		t.Errorf("full subnet: %v", err)
	}
	// Freed addresses come back only after the rest: here the only one.
	delete(r.ctrs, "b")
	if a, err := r.allocIP(); err != nil || a.String() != "10.2.3.11" {
		t.Errorf("after free: %v, %v", a, err)
	}
}

// Fuzz targets for everything read from files another party can write:
// the host's resolv.conf and subuid, and, from inside the container, the
// exit status and the log.

func FuzzParseResolvConf(f *testing.F) {
	f.Add([]byte("nameserver 10.0.0.1\nnameserver 127.0.0.53\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, s := range parseResolvConf(data) {
			a, err := netip.ParseAddr(s)
			if err != nil || a.IsLoopback() || strings.ContainsAny(s, "\n \t") {
				t.Fatalf("returned %q", s)
			}
		}
	})
}

func FuzzParseExitCode(f *testing.F) {
	f.Add([]byte("3\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		code, ok := parseExitCode(data)
		if ok != (code >= 0) || code > 255 || code < -1 {
			t.Fatalf("parseExitCode(%q) = %d, %v", data, code, ok)
		}
	})
}

func FuzzParseCount(f *testing.F) {
	f.Add([]byte("1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, ok := parseCount(data)
		if ok != (n >= 0 && strings.TrimSpace(string(data)) == strconv.Itoa(n)) || n < 0 {
			t.Fatalf("parseCount(%q) = %d, %v", data, n, ok)
		}
	})
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add([]byte(`{"name":"web","ip":"10.77.0.2","image":"/i","hostname":"web","created_at":"2025-01-01T00:00:00Z","exit_code":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeMeta(data)
		if err != nil {
			return
		}
		if validName(m.Name) != nil || !m.IP.Is4() {
			t.Fatalf("accepted %+v", m)
		}
	})
}

func FuzzLastLines(f *testing.F) {
	f.Add([]byte("a\nb\nc"), 2, true)
	f.Fuzz(func(t *testing.T, data []byte, n int, partial bool) {
		n %= 1000
		lines := lastLines(data, n, partial)
		if n > 0 && len(lines) > n {
			t.Fatalf("%d lines for n=%d", len(lines), n)
		}
		for _, l := range lines {
			if strings.Contains(l, "\n") {
				t.Fatalf("line %q contains a newline", l)
			}
		}
		if !partial && len(data) > 0 && data[len(data)-1] != '\n' && n != 0 && (len(lines) == 0 || !strings.HasSuffix(string(data), lines[len(lines)-1])) {
			t.Fatalf("unfinished last line lost: %q -> %q", data, lines)
		}
	})
}

func TestBridgeMAC(t *testing.T) {
	a, b := bridgeMAC("upsbr0"), bridgeMAC("upsbr1")
	if a == b || a != bridgeMAC("upsbr0") {
		t.Fatalf("bridgeMAC not stable or not distinct: %s %s", a, b)
	}
	hw, err := net.ParseMAC(a)
	if err != nil || hw[0]&0x02 == 0 || hw[0]&0x01 != 0 {
		t.Fatalf("%s is not a locally administered unicast MAC: %v", a, err)
	}
}
