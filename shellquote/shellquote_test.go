package shellquote

import (
	"os/exec"
	"strings"
	"testing"
)

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":      "''",
		"a b":   "'a b'",
		"it's":  `'it'\''s'`,
		"$x\n'": `'$x` + "\n" + `'\'''`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}

// FuzzQuote: whatever s holds, a shell reads Quote(s) back as s, one word.
func FuzzQuote(f *testing.F) {
	shells := shells(f)
	f.Fuzz(func(t *testing.T, s string) {
		// A NUL cannot be in an argument; the kernel caps one at 128 KiB.
		if strings.ContainsRune(s, 0) || len(s) > 64<<10 {
			return
		}
		for _, sh := range shells {
			// The word after it proves Quote(s) ended where it should.
			script := "printf '%s|' " + Quote(s) + " end"
			out, err := exec.Command(sh[0], append(sh[1:], "-c", script)...).Output()
			if err != nil {
				t.Fatalf("%v -c with Quote(%q): %v", sh, s, err)
			}
			if want := s + "|end|"; string(out) != want {
				t.Fatalf("%v read Quote(%q) as %q", sh, s, out)
			}
		}
	})
}

// shells are the POSIX shells here that Upscale's words meet: /bin/sh
// (dash on Debian, the agent's and a container's), bash (a common login
// shell for the SSH commands of hosts add) and busybox's ash (minimal
// container images).
func shells(tb testing.TB) [][]string {
	var out [][]string
	for _, sh := range [][]string{{"sh"}, {"bash"}, {"busybox", "sh"}} {
		if _, err := exec.LookPath(sh[0]); err == nil {
			out = append(out, sh)
		}
	}
	if len(out) == 0 {
		tb.Fatal("no POSIX shell found (want sh)")
	}
	return out
}
