package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// options are the settings shared by the server and the local admin CLI:
// flags, else upscale.yaml, else the defaults below.
type options struct {
	Config   string `yaml:"-"`
	Listen   string `yaml:"listen"`
	Data     string `yaml:"data"`
	DB       string `yaml:"db"`
	Domain   string `yaml:"domain"`
	Runtimes string `yaml:"runtimes"`
}

const defaultConfig = "/etc/upscale/upscale.yaml"

func (o *options) register(fs *pflag.FlagSet) {
	fs.StringVar(&o.Config, "config", defaultConfig, "settings file (optional); flags override it")
	fs.StringVar(&o.Data, "data", "/var/lib/upscale", "data directory: repositories, host key, SQLite store")
	fs.StringVar(&o.DB, "db", "", "store: empty for SQLite in the data dir (DATA/upscale.db), or mysql://user:pass@tcp(host:3306)/upscale")
	fs.StringVar(&o.Domain, "domain", "upscale.localhost", "apps answer at http://APP.NAMESPACE.DOMAIN")
	fs.StringVar(&o.Runtimes, "runtimes", "", "directory of runtime YAML files that add to or override the built-in ones")
}

// maxConfig bounds upscale.yaml; real ones are a few lines.
const maxConfig = 64 << 10

// load fills every option not set by a flag from the settings file.
func (o *options) load(fs *pflag.FlagSet) error {
	b, err := os.ReadFile(o.Config)
	if errors.Is(err, os.ErrNotExist) && !fs.Changed("config") {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading settings: %w", err)
	}
	file, err := parseConfig(b)
	if err != nil {
		return fmt.Errorf("%s: %w", o.Config, err)
	}
	set := func(name string, dst *string, v string) {
		if v != "" && (fs.Lookup(name) == nil || !fs.Changed(name)) {
			*dst = v
		}
	}
	set("listen", &o.Listen, file.Listen)
	set("data", &o.Data, file.Data)
	set("db", &o.DB, file.DB)
	set("domain", &o.Domain, file.Domain)
	set("runtimes", &o.Runtimes, file.Runtimes)
	return nil
}

// parseConfig reads upscale.yaml strictly: a typo is an error, not a
// silently ignored setting.
func parseConfig(b []byte) (options, error) {
	var o options
	if len(b) > maxConfig {
		return o, fmt.Errorf("%d bytes is over the 64 KiB limit", len(b))
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return o, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err := dec.Decode(&o)
	var te *yaml.TypeError
	switch {
	case err == nil, errors.Is(err, io.EOF):
		return o, nil
	case errors.As(err, &te):
		err = fmt.Errorf("%s (known settings: listen, data, db, domain, runtimes)", strings.Join(te.Errors, "; "))
	}
	// Quoted values may hold newlines; the error must stay one line.
	return o, errors.New(strings.Join(strings.Fields(err.Error()), " "))
}
