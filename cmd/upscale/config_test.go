package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "upscale.yaml")
	os.WriteFile(cfg, []byte("listen: :2300\ndata: /srv/upscale\ndomain: apps.example.com\n"), 0o600)
	o := &options{Listen: ":2222"}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	o.register(fs)
	fs.StringVar(&o.Listen, "listen", ":2222", "")
	if err := fs.Parse([]string{"--config", cfg, "--domain", "flag.example.com"}); err != nil {
		t.Fatal(err)
	}
	if err := o.load(fs); err != nil {
		t.Fatal(err)
	}
	if o.Listen != ":2300" || o.Data != "/srv/upscale" || o.Domain != "flag.example.com" || o.DB != "" {
		t.Fatalf("options %+v: file should fill what flags did not set", o)
	}
}

func TestSettingsFileErrors(t *testing.T) {
	dir := t.TempDir()
	o := &options{}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	o.register(fs)
	// The default file may be missing; a named one may not.
	fs.Parse([]string{"--config", filepath.Join(dir, "missing.yaml")})
	if err := o.load(fs); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("missing named file: %v", err)
	}
	for in, want := range map[string]string{
		"domian: x\n":              `unknown setting "domian"`,
		"listen: [1, 2]\n":         "cannot unmarshal",
		"- a\n":                    "cannot unmarshal",
		strings.Repeat("#", 70000): "over the 64 KiB limit",
	} {
		if _, err := parseConfig([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseConfig(%.20q) = %v, want %q", in, err, want)
		}
	}
	if o, err := parseConfig([]byte("# nothing\n")); err != nil || len(o) != 0 {
		t.Fatalf("comment-only file: %+v %v", o, err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("listen: :2222\ndata: /var/lib/upscale\ndb: mysql://u:p@tcp(db:3306)/upscale\ndomain: apps.example.com\nruntimes: /etc/upscale/runtimes\n"))
	f.Add([]byte("domain: upscale.localhost\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := parseConfig(b)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if _, ok := o["config"]; ok {
			t.Fatalf("the file set the config path itself: %+v", o)
		}
	})
}

// The build and push limits: defaults, sizes in app.yaml's syntax, and one
// line naming what is wrong otherwise.
func TestBuildLimitFlags(t *testing.T) {
	parse := func(args ...string) (*serverOptions, error) {
		c := serverCommand(&options{}, io.Discard)
		so := &serverOptions{}
		if err := c.Flags().Parse(args); err != nil {
			return nil, err
		}
		for _, name := range []string{"build-memory", "build-cpu", "max-push-size", "max-build-output", "max-build-files"} {
			f := c.Flags().Lookup(name)
			switch name {
			case "build-memory":
				so.BuildMemory = *f.Value.(sizeValue).p
			case "build-cpu":
				so.BuildCPU, _ = c.Flags().GetFloat64(name)
			case "max-push-size":
				so.MaxPushSize = *f.Value.(sizeValue).p
			case "max-build-output":
				so.MaxBuildOutput = *f.Value.(sizeValue).p
			case "max-build-files":
				so.MaxBuildEntries, _ = c.Flags().GetInt(name)
			}
		}
		return so, so.checkLimits()
	}
	so, err := parse()
	if err != nil || so.BuildMemory != 1<<30 || so.BuildCPU != 1 || so.MaxPushSize != 1<<30 || so.MaxBuildOutput != 1<<30 || so.MaxBuildEntries != 200000 {
		t.Fatalf("defaults %+v, %v", so, err)
	}
	so, err = parse("--build-memory", "2G", "--build-cpu", "0.5", "--max-push-size", "1M", "--max-build-output", "512M", "--max-build-files", "1000")
	if err != nil || so.BuildMemory != 2<<30 || so.BuildCPU != 0.5 || so.MaxPushSize != 1<<20 || so.MaxBuildOutput != 512<<20 || so.MaxBuildEntries != 1000 {
		t.Fatalf("set %+v, %v", so, err)
	}
	for _, args := range [][]string{
		{"--max-push-size", "100"}, {"--max-push-size", "512K"}, {"--build-memory", "lots"},
		{"--build-cpu", "0"}, {"--build-cpu", "NaN"}, {"--max-build-files", "0"},
	} {
		if _, err := parse(args...); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: %v, want a one-line error", args, err)
		}
	}
}
