package names

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantErr string
	}{
		{"test", ""},
		{"a", ""},
		{"my-app-2", ""},
		{strings.Repeat("a", 40), ""},
		{strings.Repeat("a", 41), "invalid app name"},
		{strings.Repeat("a", 200), `"` + strings.Repeat("a", 64) + `"...`},
		{"", "app name is empty"},
		{"Test", `invalid app name "Test"`},
		{"a/../b", `invalid app name "a/../b"`},
		{"x;rm -rf /", `invalid app name "x;rm -rf /"`},
		{"1abc", "starting with a letter"},
		{"a_b", "invalid"},
		{"a\nb", "invalid"},
	} {
		err := Check("app", tc.in)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("Check(%q) = %v, want nil", tc.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("Check(%q) = %v, want error containing %q", tc.in, err, tc.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("Check(%q) error spans lines: %q", tc.in, err)
		}
	}
}

func TestParseRepoPath(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"test/test.git", "test/test"},
		{"/test/test.git", "test/test"},
		{"test/test", "test/test"},
		{"//test/test.git", ""},
		{"/var/lib/upscale/repos/test/test.git", ""},
		{"test/../test.git", ""},
		{"../test/test.git", ""},
		{"test//test.git", ""},
		{"test/test/x.git", ""},
		{"test/test.git/", ""},
		{"Test/test.git", ""},
		{"test.git", ""},
		{"", ""},
	} {
		got, err := ParseRepoPath(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ParseRepoPath(%q) = %v, want error", tc.in, got)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("ParseRepoPath(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestParseApp(t *testing.T) {
	if a, err := ParseApp("ns/app"); err != nil || a != (App{"ns", "app"}) {
		t.Fatalf("ParseApp = %v, %v", a, err)
	}
	for _, in := range []string{"ns", "ns/", "/app", "ns/app/x", "NS/app", "ns/a..b"} {
		if _, err := ParseApp(in); err == nil {
			t.Errorf("ParseApp(%q) succeeded", in)
		}
	}
}

func TestReserved(t *testing.T) {
	for _, s := range []string{"build", "exec", "api", "www", "admin", "upscale", "root", "system", "default", "git", "ssh",
		"mail", "static", "assets", "console", "status", "help"} {
		err := Reserved(s)
		if err == nil || err.Error() != `namespace name "`+s+`" is reserved for the platform; choose another` {
			t.Errorf("Reserved(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"acme", "builds", "my-build", "apis", "webapp"} {
		if err := Reserved(s); err != nil {
			t.Errorf("Reserved(%q) = %v, want nil", s, err)
		}
	}
}
