package agentapi

import (
	"testing"
	"time"
)

// FuzzParseStampedLine covers log lines from agent hosts: any line parses
// or is taken as unstamped, and what StampLine makes comes back whole.
func FuzzParseStampedLine(f *testing.F) {
	f.Add("2026-11-25T02:03:04.123456789Z GET / 200", int64(0), "")
	f.Add("2026-11-25T02:03:04.123456789Z ", int64(1764036184), "x")
	f.Add("not stamped at all", int64(-1), "\x00\xff")
	f.Add("2026-13-45T99:03:04.123456789Z bad", int64(253402300799), "line")
	f.Fuzz(func(t *testing.T, raw string, sec int64, text string) {
		if at, rest, ok := ParseStampedLine(raw); ok {
			if at.Location() != time.UTC || len(rest) != len(raw)-len(stampLayout)-1 {
				t.Fatalf("%q parsed as %v, %q", raw, at, rest)
			}
		} else if rest != raw {
			t.Fatalf("unstamped %q came back as %q", raw, rest)
		}
		at := time.Unix(sec%253402300799, 0).UTC()
		if at.Year() < 0 {
			return
		}
		got, rest, ok := ParseStampedLine(StampLine(at, text))
		if !ok || !got.Equal(at) || rest != text {
			t.Fatalf("StampLine(%v, %q) parsed as %v, %q, %v", at, text, got, rest, ok)
		}
	})
}
