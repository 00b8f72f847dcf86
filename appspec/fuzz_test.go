package appspec

import (
	"slices"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, problems := Parse(data, known)
		for _, p := range problems {
			s := p.String()
			if !strings.HasPrefix(s, "app.yaml:") || strings.ContainsAny(s, "\r\n") {
				t.Fatalf("problem is not one line starting with app.yaml: %q", s)
			}
		}
		if len(problems) > maxProblems+1 {
			t.Fatalf("%d problems, over the cap", len(problems))
		}
		if problems != nil {
			if spec != nil {
				t.Fatalf("both a spec and problems: %+v", spec)
			}
			return
		}
		if spec == nil || !slices.Contains(known, spec.Runtime) {
			t.Fatalf("no problems but spec %+v", spec)
		}
		if spec.Instances < 1 || spec.Instances > maxInstances ||
			spec.Memory != 0 && (spec.Memory < minMemory || spec.Memory > maxMemory) ||
			spec.Health != "" && !strings.HasPrefix(spec.Health, "/") {
			t.Fatalf("out of bounds: %+v", spec)
		}
		for k := range spec.Env {
			if k == "PORT" || strings.HasPrefix(k, "UPSCALE_") || !envKeyRE.MatchString(k) {
				t.Fatalf("accepted env %q", k)
			}
		}
	})
}
