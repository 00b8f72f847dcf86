package detect

import (
	"slices"
	"strings"
	"testing"

	"github.com/upscalehq/upscale/runtimes"
)

// File names are the pusher's: whatever they are, detection picks a runtime
// of the catalog with a reason for it and for every runner-up, or refuses
// in one line.
func FuzzRuntime(f *testing.F) {
	c, err := runtimes.Load("")
	if err != nil {
		f.Fatal(err)
	}
	all := c.All()
	f.Fuzz(func(t *testing.T, list string) {
		names := strings.Split(list, "\n")
		rt, reasons, problem := Runtime(names, all)
		if problem != "" {
			if rt != "" || reasons != nil || strings.ContainsAny(problem, "\r\n") {
				t.Fatalf("refusal %q with runtime %q, reasons %q", problem, rt, reasons)
			}
			return
		}
		if _, ok := c.Get(rt); !ok || len(reasons) == 0 || !strings.HasPrefix(reasons[0], "detected "+rt+": ") {
			t.Fatalf("runtime %q, reasons %q", rt, reasons)
		}
		// The order git lists files in decides nothing.
		rev := slices.Clone(names)
		slices.Reverse(rev)
		if again, _, _ := Runtime(rev, all); again != rt {
			t.Fatalf("%q gives %s, reversed %s", names, rt, again)
		}
	})
}
