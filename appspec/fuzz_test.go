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
		_, hasWeb := spec.Processes[web]
		hasWeb = hasWeb || spec.Processes == nil
		if hasWeb && (spec.Instances < 1 || spec.Instances > maxInstances) ||
			!hasWeb && (spec.Instances != 0 || spec.Health != "") ||
			spec.Memory != 0 && (spec.Memory < minMemory || spec.Memory > maxMemory) ||
			spec.CPU != 0 && !(spec.CPU >= minCPU && spec.CPU <= maxCPU) ||
			spec.Health != "" && !strings.HasPrefix(spec.Health, "/") {
			t.Fatalf("out of bounds: %+v", spec)
		}
		if spec.Processes != nil && (spec.Start != "" || len(spec.Processes) == 0 || len(spec.Processes) > maxProcesses) {
			t.Fatalf("processes: %+v", spec)
		}
		for typ, cmd := range spec.Processes {
			if !processRE.MatchString(typ) || len(cmd) > maxCommand || strings.ContainsRune(cmd, 0) ||
				typ != web && strings.TrimSpace(cmd) == "" {
				t.Fatalf("accepted process %q: %q", typ, cmd)
			}
		}
		for k := range spec.Env {
			if k == "PORT" || strings.HasPrefix(k, "UPSCALE_") || !envKeyRE.MatchString(k) {
				t.Fatalf("accepted env %q", k)
			}
		}
	})
}

// FuzzParseSize covers sizes from app.yaml and the server's flags: what
// parses is positive or zero, and its formatted form parses back the same.
func FuzzParseSize(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
		if back, err := ParseSize(FormatSize(n)); err != nil || back != n&^1023 {
			t.Fatalf("ParseSize(FormatSize(%d)) = %d, %v", n, back, err)
		}
	})
}
