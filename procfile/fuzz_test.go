package procfile

import (
	"strings"
	"testing"

	"github.com/upscalehq/upscale/appspec"
)

// Whatever the input, Parse gives processes that app.yaml would accept, or
// one line naming the Procfile.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		procs, err := Parse(data)
		if err != nil {
			if msg := err.Error(); !strings.HasPrefix(msg, "Procfile") || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("error is not one line naming the Procfile: %q", msg)
			}
			return
		}
		seen := map[string]bool{}
		for _, p := range procs {
			if appspec.TypeProblem(p.Type) != "" || appspec.CommandProblem(p.Command) != "" || seen[p.Type] || p.Line < 1 {
				t.Fatalf("accepted %+v", p)
			}
			seen[p.Type] = true
		}
		if len(procs) == 0 {
			t.Fatal("no processes and no error")
		}
	})
}
