package router

import (
	"reflect"
	"testing"
)

func TestParseCrtList(t *testing.T) {
	got, err := parseCrtList(seed(t, "FuzzParseCrtList", "two-entries"))
	if err != nil {
		t.Fatal(err)
	}
	want := []crtLine{
		{file: "/var/lib/upscale/router/tls/certs/web.acme.test.pem", line: 1, names: []string{"web.acme.test"}},
		{file: "/var/lib/upscale/router/tls/certs/_.blog.test.pem", line: 3, names: []string{"*.blog.test", "blog.test"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	got, err = parseCrtList(seed(t, "FuzzParseCrtList", "options"))
	if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0].names, []string{"a.test", "!b.a.test"}) {
		t.Errorf("with options: %+v, %v", got, err)
	}
	if got, err := parseCrtList(seed(t, "FuzzParseCrtList", "empty")); err != nil || len(got) != 0 {
		t.Errorf("empty: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "Unknown command.\n", "# l\n/a.pem a.test\n", "# l\n/a.pem:x a.test\n", "# l\n:1 a\n", "# l\n/a.pem:0 a\n"} {
		if _, err := parseCrtList(bad); err == nil {
			t.Errorf("parseCrtList(%q) succeeded", bad)
		}
	}
}

func TestParseLoadedCerts(t *testing.T) {
	lc, err := parseLoadedCerts(seed(t, "FuzzParseLoadedCerts", "loaded"))
	if err != nil || len(lc.files) != 3 || !lc.files["/var/lib/upscale/router/tls/pending.pem"] || len(lc.open) != 0 {
		t.Errorf("loaded: %+v, %v", lc, err)
	}
	lc, err = parseLoadedCerts(seed(t, "FuzzParseLoadedCerts", "transaction"))
	if err != nil || !lc.open["/r/tls/certs/a.pem"] || len(lc.files) != 2 {
		t.Errorf("transaction: %+v, %v", lc, err)
	}
	for _, bad := range []string{"", "Unknown command.\n", "# filename\nrelative.pem\n", "# filename\n/a b.pem\n"} {
		if _, err := parseLoadedCerts(bad); err == nil {
			t.Errorf("parseLoadedCerts(%q) succeeded", bad)
		}
	}
}

func TestParseCertFingerprint(t *testing.T) {
	fp, err := parseCertFingerprint(seed(t, "FuzzParseCertFingerprint", "show-cert"))
	if err != nil || fp != "9D8FB9A52F95C0785E0B8163809AB3E45150E0E2" {
		t.Errorf("got %q, %v", fp, err)
	}
	for _, bad := range []string{"", "Can't display the certificate.\n", "SHA1 FingerPrint: 12\n", "SHA1 FingerPrint: 9d8fb9a52f95c0785e0b8163809ab3e45150e0e2\n"} {
		if _, err := parseCertFingerprint(bad); err == nil {
			t.Errorf("parseCertFingerprint(%q) succeeded", bad)
		}
	}
}

func FuzzParseCrtList(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		lines, err := parseCrtList(s)
		for _, l := range lines {
			if err == nil && (l.file == "" || l.line <= 0) {
				t.Errorf("accepted %+v", l)
			}
		}
	})
}

func FuzzParseLoadedCerts(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		lc, err := parseLoadedCerts(s)
		for file := range lc.files {
			if err == nil && (file == "" || file[0] != '/') {
				t.Errorf("accepted file %q", file)
			}
		}
	})
}

func FuzzParseCertFingerprint(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		if fp, err := parseCertFingerprint(s); err == nil && len(fp) != 40 {
			t.Errorf("accepted %q", fp)
		}
	})
}
