package deploy

import (
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
