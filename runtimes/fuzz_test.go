package runtimes

import (
	"strings"
	"testing"

	"github.com/upscalehq/upscale/names"
)

func FuzzParseRuntime(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parse("x.yaml", data)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "x.yaml:") || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("error is not one line starting with the file name: %q", msg)
			}
			return
		}
		if p.Version != schemaVersion || names.Check("runtime", p.Name) != nil || p.PortEnv == "" || len(p.Packages) == 0 || strings.TrimSpace(p.Start) == "" {
			t.Fatalf("accepted an invalid runtime: %+v", p.Runtime)
		}
		for _, pkg := range p.Packages {
			if strings.HasPrefix(pkg, "-") {
				t.Fatalf("accepted package %q", pkg)
			}
		}
	})
}
