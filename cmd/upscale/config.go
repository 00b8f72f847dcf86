package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/upscalehq/upscale/msgtext"
)

// options are the settings shared by the server and the local admin CLI:
// flags, else upscale.yaml, else the flags' defaults.
type options struct {
	Config   string
	Listen   string
	Data     string
	DB       string
	Domain   string
	Runtimes string
}

const defaultConfig = "/etc/upscale/upscale.yaml"

// settings are the keys upscale.yaml may hold: the long flag names.
var settings = []string{"listen", "data", "db", "domain", "runtimes", "http", "bus", "bus-listen",
	"agent", "agent-args", "build-timeout", "health-timeout",
	"ssh-login-grace", "ssh-max-startups", "ssh-max-startups-per-source", "ssh-max-sessions",
	"ssh-host", "dns-resolver", "default-cpu", "default-memory", "quota-apps", "quota-instances", "quota-memory", "quota-exec",
	"build-memory", "build-cpu", "max-push-size", "max-build-output", "max-build-files",
	"build-disk", "container-disk",
	"https", "tls", "acme-directory", "acme-email", "acme-ca-root", "acme-listen",
	"dns-rfc2136-server", "dns-rfc2136-zone", "dns-tsig-name", "dns-tsig-secret-file", "dns-tsig-algorithm"}

func (o *options) register(fs *pflag.FlagSet) {
	fs.StringVar(&o.Config, "config", defaultConfig, "settings file (optional); flags override it")
	fs.StringVar(&o.Data, "data", "/var/lib/upscale", "data directory: repositories, host key, SQLite store")
	fs.StringVar(&o.DB, "db", "", "store: empty for SQLite in the data dir (DATA/upscale.db), or mysql://user:pass@tcp(host:3306)/upscale")
	fs.StringVar(&o.Domain, "domain", "upscale.localhost", "apps answer at http://APP.NAMESPACE.DOMAIN")
	fs.StringVar(&o.Runtimes, "runtimes", "", "directory of runtime YAML files that add to or override the built-in ones")
}

// maxConfig bounds upscale.yaml; real ones are a few lines.
const maxConfig = 64 << 10

// load sets every flag the command line did not from the settings file.
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
	for _, name := range settings {
		v, ok := file[name]
		if !ok {
			continue
		}
		f := fs.Lookup(name)
		switch {
		case f == nil && name == "listen":
			o.Listen = v // the local CLI shows the port in git remotes
		case f == nil || f.Changed:
		default:
			if err := fs.Set(name, v); err != nil {
				return fmt.Errorf("%s: %s: %v", o.Config, name, err)
			}
		}
	}
	return nil
}

// parseConfig reads upscale.yaml strictly: a typo is an error, not a
// silently ignored setting.
func parseConfig(b []byte) (map[string]string, error) {
	if len(b) > maxConfig {
		return nil, fmt.Errorf("%d bytes is over the 64 KiB limit", len(b))
	}
	out := map[string]string{}
	if len(bytes.TrimSpace(b)) == 0 {
		return out, nil
	}
	err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&out)
	var te *yaml.TypeError
	switch {
	case errors.Is(err, io.EOF):
		return out, nil
	case errors.As(err, &te):
		err = errors.New(strings.Join(te.Errors, "; "))
	case err == nil:
		for k := range out {
			if !slices.Contains(settings, k) {
				return nil, fmt.Errorf("unknown setting %q (known: %s)", k, strings.Join(settings, ", "))
			}
		}
		return out, nil
	}
	// Quoted values may hold newlines; the error must stay one line.
	return nil, errors.New(msgtext.OneLine(err.Error()))
}
