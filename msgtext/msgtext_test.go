package msgtext

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestShort(t *testing.T) {
	for in, want := range map[string]string{
		"0123456789abcdef0123456789abcdef01234567": "0123456",
		"0123456": "0123456",
		"abc":     "abc",
		"":        "",
	} {
		if got := Short(in); got != want {
			t.Errorf("Short(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                         "plain",
		"  two\n\nlines \r\n":           "two lines",
		"tab\there":                     "tab here",
		"esc \x1b[31mred\x1b[0m":        "esc [31mred [0m",
		"forged\rremote: ok":            "forged remote: ok",
		"nul\x00del\x7fc1\u0085end":     "nul del c1 end",
		"line\u2028separator":           "line separator",
		"caf\u00e9 \u2026":              "caf\u00e9 \u2026",
		"bad \xff byte":                 "bad \uFFFD byte",
		"yaml: line 3: did not find it": "yaml: line 3: did not find it",
	} {
		if got := OneLine(in); got != want {
			t.Errorf("OneLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"abcdefghij", 8, "abcde…"},
		{"abcdefghij", 3, "…"},
		{"abcdefghij", 2, "ab"},
		{"abcdefghij", 0, ""},
		{"abcdefghij", -1, ""},
		{"ééééé", 8, "éé…"},                                   // 2+2 bytes fit before the mark, not 2.5 runes
		{"é", 1, ""},                                          // no room for the rune nor the mark
		{strings.Repeat("\x80", 12), 10, "\x80\x80\x80\x80…"}, // invalid input: cut close to n
	} {
		if got := Truncate(tc.in, tc.n); got != tc.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// From bus: a progress line cut to a frame's size stays valid UTF-8.
func TestTruncateKeepsRunes(t *testing.T) {
	s := strings.Repeat("é", 100)
	got := Truncate(s, 51)
	if len(got) > 51 || !strings.HasSuffix(got, "…") || strings.ContainsRune(got, '\uFFFD') {
		t.Fatalf("truncate = %q", got)
	}
	if Truncate("short", 10) != "short" {
		t.Fatal("short string changed")
	}
}

// Seeds: what reaches OneLine and Truncate in Upscale.
var seeds = []string{
	"ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey], no supported methods remain",
	"found character that cannot start any token",
	"exit status 1: E: Unable to locate package nope\r\nE: \x1b[31mfailed\x1b[0m\n",
	"Fix caf\u00e9 page \U0001F600 \u2014 see #12\n\nLonger body\u2028with a separator",
	"invalid \xff\xfe utf-8",
}

func FuzzOneLine(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := OneLine(s)
		if !utf8.ValidString(got) || strings.Contains(got, "  ") || strings.TrimSpace(got) != got {
			t.Fatalf("OneLine(%q) = %q", s, got)
		}
		for _, r := range got {
			if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
				t.Fatalf("OneLine(%q) = %q keeps %U", s, got, r)
			}
		}
		if OneLine(got) != got {
			t.Fatalf("OneLine(%q) = %q is not stable", s, got)
		}
	})
}

func FuzzTruncate(f *testing.F) {
	for _, s := range seeds {
		f.Add(s, 40)
	}
	f.Fuzz(func(t *testing.T, s string, n int) {
		got := Truncate(s, n)
		if len(s) <= n {
			if got != s {
				t.Fatalf("Truncate(%q, %d) = %q, want it unchanged", s, n, got)
			}
			return
		}
		kept := strings.TrimSuffix(got, ellipsis)
		if len(got) > max(n, 0) || !strings.HasPrefix(s, kept) || len(kept) < n-len(ellipsis)-(utf8.UTFMax-1) {
			t.Fatalf("Truncate(%q, %d) = %q", s, n, got)
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("Truncate(%q, %d) = %q splits a rune", s, n, got)
		}
	})
}
