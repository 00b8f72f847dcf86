package deploy

import (
	"regexp"
	"strings"
	"testing"
)

func TestNormalizeHostname(t *testing.T) {
	const platform = "upscale.example.net"
	for _, tc := range []struct{ in, want string }{
		{"www.example.com", "www.example.com"},
		{"WWW.Example.COM", "www.example.com"},
		{"www.example.com.", "www.example.com"},
		{"example.com", "example.com"},
		{"a-b.c-d.example", "a-b.c-d.example"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"123.example.com", "123.example.com"},
		{strings.Repeat("a", 63) + ".com", strings.Repeat("a", 63) + ".com"},
		{"upscale.example.net.evil.com", "upscale.example.net.evil.com"},
		{"notupscale.example.net", "notupscale.example.net"},
	} {
		got, err := NormalizeHostname(tc.in, platform)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeHostname(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	long := strings.Repeat(strings.Repeat("a", 60)+".", 4) + "com" // 247
	if _, err := NormalizeHostname(long, platform); err != nil {
		t.Errorf("247 characters: %v", err)
	}
	for _, tc := range []struct{ in, why string }{
		{"", "empty"},
		{".", "empty"},
		{"localhost", "two labels"},
		{"www..example.com", "empty label"},
		{"www.example.com..", "empty label"},
		{".example.com", "empty label"},
		{"*.example.com", "wildcards"},
		{"-www.example.com", "inner dashes"},
		{"www-.example.com", "inner dashes"},
		{"www_x.example.com", "inner dashes"},
		{"www.exa mple.com", "without scheme"},
		{"http://www.example.com", "without scheme"},
		{"www.example.com:8080", "without scheme"},
		{"www.example.com/path", "without scheme"},
		{"bücher.example", "non-ASCII"},
		{"www.example.com\n", "inner dashes"},
		{"10.0.0.1", "IP address"},
		{strings.Repeat("a", 64) + ".com", "longer than 63"},
		{strings.Repeat(strings.Repeat("a", 60)+".", 4) + "comcomcomc", "at most 253"},
		{"upscale.example.net", "platform's own"},
		{"web.acme.upscale.example.net", "platform's own"},
		{"WEB.acme.Upscale.Example.Net.", "platform's own"},
	} {
		got, err := NormalizeHostname(tc.in, platform)
		if err == nil || !strings.Contains(err.Error(), tc.why) || !strings.HasPrefix(err.Error(), "invalid domain ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("NormalizeHostname(%q) = %q, %v; want one line saying %q", tc.in, got, err, tc.why)
		}
	}
}

// FuzzNormalizeHostname covers hostnames from ssh command lines: what it
// accepts is a lowercase DNS name the router takes, and normalizing it
// again changes nothing.
func FuzzNormalizeHostname(f *testing.F) {
	for _, s := range []string{"www.example.com", "WWW.Example.COM.", "*.example.com", "a..b", "web.acme.upscale.localhost",
		"xn--bcher-kva.example", "10.0.0.1", "bücher.example", "a-.b", strings.Repeat("a.", 130) + "com"} {
		f.Add(s)
	}
	label := regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	f.Fuzz(func(t *testing.T, in string) {
		out, err := NormalizeHostname(in, "upscale.localhost")
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") || len(msg) > 400 {
				t.Fatalf("error for %q is not one short line: %q", in, msg)
			}
			return
		}
		if len(out) > 253 || strings.Count(out, ".") < 1 || strings.HasSuffix(out, ".upscale.localhost") {
			t.Fatalf("accepted %q as %q", in, out)
		}
		for _, l := range strings.Split(out, ".") {
			if !label.MatchString(l) {
				t.Fatalf("accepted %q as %q, label %q", in, out, l)
			}
		}
		if again, err := NormalizeHostname(out, "upscale.localhost"); err != nil || again != out {
			t.Fatalf("%q normalized to %q, then to %q, %v", in, out, again, err)
		}
	})
}
