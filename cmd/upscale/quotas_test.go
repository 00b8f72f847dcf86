package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/upscalehq/upscale/store"
)

func TestLimitFlags(t *testing.T) {
	parse := func(args ...string) (limitOptions, error) {
		var l limitOptions
		o := &options{}
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		o.register(fs)
		l.register(fs)
		if err := fs.Parse(args); err != nil {
			return l, err
		}
		return l, o.load(fs)
	}
	l, err := parse()
	if err != nil || l.DefaultCPU != 1 || l.DefaultMemory != 512<<20 || l.Quota != (store.Quota{Apps: 20, Instances: 40, Memory: 8 << 30, Exec: 4}) {
		t.Errorf("defaults: %+v, %v", l, err)
	}
	cfg := filepath.Join(t.TempDir(), "upscale.yaml")
	os.WriteFile(cfg, []byte("quota-memory: 16G\nquota-exec: 0\n"), 0o600)
	l, err = parse("--config", cfg, "--default-cpu", "0.5", "--default-memory", "1G", "--quota-apps", "3", "--quota-instances", "0")
	if err != nil || l.DefaultCPU != 0.5 || l.DefaultMemory != 1<<30 || l.Quota != (store.Quota{Apps: 3, Memory: 16 << 30}) {
		t.Errorf("flags and upscale.yaml: %+v, %v", l, err)
	}
	for _, bad := range [][]string{
		{"--default-cpu", "-1"}, {"--default-cpu", "100"}, {"--default-cpu", "0.001"}, {"--default-cpu", "NaN"},
		{"--quota-apps", "-1"}, {"--quota-exec", "many"}, {"--quota-memory", "8"}, {"--quota-memory", "1M"},
		{"--default-memory", "0"}, {"--default-memory", "65G"}, {"--default-memory", "32M"},
	} {
		if _, err := parse(bad...); err == nil || !strings.Contains(err.Error(), bad[0]) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: %v, want one line naming the flag", bad, err)
		}
	}
}
