package cloud

import (
	"regexp"
	"strings"
	"testing"
)

func TestParseProbe(t *testing.T) {
	for _, c := range []struct {
		out  string
		want probe
		err  string
	}{
		{"upscale-probe uid=0\nupscale-probe debian=12.5\n", probe{UID: 0, Debian: "12.5"}, ""},
		{"Welcome!\r\nupscale-probe uid=1000\r\nupscale-probe debian=bookworm/sid\r\nupscale-probe sudo=yes\r\n", probe{UID: 1000, Debian: "bookworm/sid", Sudo: true}, ""},
		{"upscale-probe uid=1000\nupscale-probe nodebian\nupscale-probe sudo=no\n", probe{UID: 1000}, ""},
		{"upscale-probe uid=0\nupscale-probe debian=\n", probe{Debian: "(unknown version)"}, ""},
		{"upscale-probe uid=root\n", probe{}, `unexpected answer to id -u: "root"`},
		{"upscale-probe uid=-1\n", probe{}, `unexpected answer to id -u: "-1"`},
		{"", probe{}, "no answer to id -u"},
	} {
		got, err := parseProbe(c.out)
		if (err == nil) != (c.err == "") || (err != nil && err.Error() != c.err) || got != c.want {
			t.Errorf("parseProbe(%q) = %+v, %v; want %+v, %q", c.out, got, err, c.want, c.err)
		}
	}
}

func TestSplitAddr(t *testing.T) {
	for _, c := range []struct{ in, addr, host string }{
		{"10.0.0.231", "10.0.0.231:22", "10.0.0.231"},
		{"10.0.0.231:2222", "10.0.0.231:2222", "10.0.0.231"},
		{"host.example", "host.example:22", "host.example"},
		{"fd00::1", "[fd00::1]:22", "fd00::1"},
		{"[fd00::1]:2222", "[fd00::1]:2222", "fd00::1"},
	} {
		if addr, host := splitAddr(c.in); addr != c.addr || host != c.host {
			t.Errorf("splitAddr(%q) = %q, %q; want %q, %q", c.in, addr, host, c.addr, c.host)
		}
	}
}

var control = regexp.MustCompile(`[\x00-\x1f\x7f]`)

// Host answers are outside input: whatever a host prints, the parse gives
// one-line values, so nothing it says can forge progress or error lines.
func FuzzParseProbe(f *testing.F) {
	f.Add("upscale-probe uid=0\nupscale-probe debian=12.5\n")
	f.Add("motd\nupscale-probe uid=1000\r\nupscale-probe debian=x\x1b[2J\nupscale-probe sudo=yes\n")
	f.Fuzz(func(t *testing.T, out string) {
		p, err := parseProbe(out)
		if err != nil {
			if control.MatchString(err.Error()) {
				t.Errorf("error has control characters: %q", err)
			}
			return
		}
		if p.UID < 0 || control.MatchString(p.Debian) {
			t.Errorf("parseProbe(%q) = %+v", out, p)
		}
	})
}

func FuzzScriptError(f *testing.F) {
	f.Add("-----> Installing packages: lxc\nerror: installing packages: apt-get exited 100: E: x\n")
	f.Add("error: \x1b]0;owned\x07: \r\n")
	f.Fuzz(func(t *testing.T, out string) {
		step, cause, ok := ScriptError(out)
		if control.MatchString(step) || control.MatchString(cause) {
			t.Errorf("ScriptError(%q) = %q, %q", out, step, cause)
		}
		if !ok && (step != "" || cause != "") {
			t.Errorf("not ok but %q, %q", step, cause)
		}
		if ok != (strings.HasPrefix(out, "error: ") || strings.Contains(out, "\nerror: ")) {
			t.Errorf("ScriptError(%q) ok = %v", out, ok)
		}
	})
}

// Whatever passes Check can go into a shell script, a systemd unit and the
// user data's here-document unquoted: no character that means anything to
// sh or systemd, and nothing that ends a here-document early.
func FuzzInstallCheck(f *testing.F) {
	f.Add("h1", "10.0.0.231", "10.77.3.0/24", "upsbr0", "/opt/upscale-agent", "lxc", "/var/cache/upscale/images")
	f.Add("h1", "", "10.77.3.0/24", "", "/opt/upscale\nUPSCALE_INSTALL_EOF", "", "")
	f.Add("h1", "a b", "fd00::/64", "br", "/srv/upscale-%h", "g++", "/x")
	safe := regexp.MustCompile(`^[A-Za-z0-9._/:+-]*$`)
	f.Fuzz(func(t *testing.T, host, address, subnet, bridge, dir, pkg, cache string) {
		in := Install{Host: host, Address: address, Subnet: subnet, Bridge: bridge, Dir: dir, ImageCache: cache}
		if pkg != "" {
			in.Packages = []string{pkg}
		}
		if in.Check() != nil {
			if s := Script(in); !strings.HasPrefix(s, "#!/bin/sh\necho 'error: checking the install: ") || strings.Count(s, "\n") != 3 {
				t.Fatalf("refusal script:\n%s", s)
			}
			return
		}
		for _, v := range []string{host, address, subnet, bridge, dir, pkg, cache} {
			if !safe.MatchString(v) {
				t.Fatalf("Check let %q through", v)
			}
		}
		s := Script(in)
		for _, delim := range []string{"UPSCALE_UNIT_EOF", "UPSCALE_SUPERVISOR_EOF"} {
			if n := strings.Count(s, "\n"+delim+"\n"); n != 1 {
				t.Fatalf("%s ends %d times", delim, n)
			}
		}
	})
}
