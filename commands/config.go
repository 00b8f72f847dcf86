package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/deploy"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// Lifecycle is what the server does to change a running app: config vars,
// scaling, rollback. Who asks travels in ctx (deploy.WithBy).
type Lifecycle interface {
	SetConfig(ctx context.Context, app names.App, set map[string]string, unset []string, deploy bool, out func(string)) error
	Scale(ctx context.Context, app names.App, change map[string]int, out func(string)) error
	ProcessTypes(ctx context.Context, app names.App) ([]string, error)
	Rollback(ctx context.Context, app names.App, version int, out func(string)) (store.Release, error)
}

// Limits of config vars.
const (
	MaxConfigValue = 32 << 10  // bytes per value
	MaxConfigTotal = 256 << 10 // bytes of every name and value of an app
	MaxConfigVars  = 500
)

var configKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// reservedKeys are set by the platform in every container.
var reservedKeys = []string{"PORT"}

// checkConfigKey says what is wrong with a config var name, in one line.
func checkConfigKey(k string) error {
	if !configKey.MatchString(k) || len(k) > 256 {
		return fmt.Errorf("invalid config var name %s: use letters, digits and _, not starting with a digit (like DATABASE_URL)", names.Quote(k))
	}
	if slices.Contains(reservedKeys, strings.ToUpper(k)) {
		return fmt.Errorf("config var %s is reserved: the platform sets it in every container", k)
	}
	return nil
}

func checkConfigValue(k, v string) error {
	if len(v) > MaxConfigValue {
		return fmt.Errorf("config var %s is too large: %d bytes, the limit is %d bytes (32 KiB) per value", k, len(v), MaxConfigValue)
	}
	if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
		return fmt.Errorf("config var %s: the value must be UTF-8 text without NUL bytes", k)
	}
	return nil
}

func (s *session) configCommands() *cobra.Command {
	g := s.group("config", "Set, show and remove an app's config vars (its environment)", "env")
	var app names.App
	scopeOf := func(_ *cobra.Command, args []string) (sc scope, err error) {
		if len(args) == 0 {
			return sc, errors.New("missing NS/APP")
		}
		app, sc, err = appArg(args)
		return sc, err
	}
	say := func(cmd *cobra.Command) func(string) {
		return func(l string) { fmt.Fprintln(cmd.OutOrStdout(), l) }
	}

	set := &cobra.Command{
		Use:   "set NS/APP KEY=VALUE [KEY=VALUE...]",
		Short: "Set config vars and roll out a new release with them (no downtime)",
		Long: "Set config vars. Unless --no-deploy, a new release of the live one's artifact runs with them,\n" +
			"rolled out without downtime; if it fails the old release keeps serving and the vars are unchanged.\n" +
			"Values are limited to 32 KiB; --stdin KEY reads one value (a certificate, say) from standard input.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return fmt.Errorf("%s needs NS/APP and KEY=VALUE pairs", cmd.CommandPath())
			}
			return nil
		},
	}
	noDeploy := set.Flags().Bool("no-deploy", false, "store the vars only; the next release, app restart or app run applies them")
	stdinKey := set.Flags().String("stdin", "", "read the value of this KEY from standard input")
	var pairs map[string]string
	s.leaf(g, set, keys.ConfigWrite, func(cmd *cobra.Command, args []string) (scope, error) {
		sc, err := scopeOf(cmd, args)
		if err != nil {
			return sc, err
		}
		if len(args) == 1 && *stdinKey == "" {
			return sc, fmt.Errorf("%s needs KEY=VALUE pairs after %s", cmd.CommandPath(), app)
		}
		pairs = map[string]string{}
		for _, a := range args[1:] {
			k, v, ok := strings.Cut(a, "=")
			if !ok {
				return sc, fmt.Errorf("%s is not KEY=VALUE", names.Quote(msgtext.Truncate(a, 80)))
			}
			if err := checkConfigKey(k); err != nil {
				return sc, err
			}
			if _, dup := pairs[k]; dup {
				return sc, fmt.Errorf("config var %s is given twice", k)
			}
			if err := checkConfigValue(k, v); err != nil {
				return sc, err
			}
			pairs[k] = v
		}
		if *stdinKey != "" {
			if err := checkConfigKey(*stdinKey); err != nil {
				return sc, err
			}
			if _, dup := pairs[*stdinKey]; dup {
				return sc, fmt.Errorf("config var %s is given twice", *stdinKey)
			}
		}
		return sc, nil
	}, func(cmd *cobra.Command, _ []string) error {
		if _, err := s.getApp(cmd, app); err != nil {
			return err
		}
		if *stdinKey != "" {
			if s.inv.Stdin == nil {
				return errors.New("--stdin: no standard input")
			}
			b, err := io.ReadAll(io.LimitReader(s.inv.Stdin, MaxConfigValue+1))
			if err != nil {
				return fmt.Errorf("reading %s from standard input: %w", *stdinKey, err)
			}
			v := strings.TrimSuffix(string(b), "\n")
			if len(b) > MaxConfigValue {
				return fmt.Errorf("config var %s is too large: over %d bytes, the limit is %d bytes (32 KiB) per value", *stdinKey, MaxConfigValue, MaxConfigValue)
			}
			if err := checkConfigValue(*stdinKey, v); err != nil {
				return err
			}
			pairs[*stdinKey] = v
		}
		if err := s.checkConfigTotal(cmd, app, pairs); err != nil {
			return err
		}
		return s.changeConfig(cmd, app, pairs, nil, !*noDeploy, say(cmd))
	})

	get := &cobra.Command{Use: "get NS/APP KEY", Short: "Print one config var's value", Args: argsN(2, "NS/APP and KEY")}
	s.leaf(g, get, keys.ConfigRead, scopeOf, func(cmd *cobra.Command, args []string) error {
		if _, err := s.getApp(cmd, app); err != nil {
			return err
		}
		vars, err := s.env.Store.GetConfig(cmd.Context(), app.Namespace, app.Name)
		if err != nil {
			return err
		}
		v, ok := vars[args[1]]
		if !ok {
			return fmt.Errorf("config var %s is not set on %s", names.Quote(args[1]), app)
		}
		_, err = io.WriteString(cmd.OutOrStdout(), v+"\n")
		return err
	})

	unset := &cobra.Command{
		Use:   "unset NS/APP KEY [KEY...]",
		Short: "Remove config vars and roll out a new release without them",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return fmt.Errorf("%s needs NS/APP and the KEYs to remove", cmd.CommandPath())
			}
			return nil
		},
	}
	unsetNoDeploy := unset.Flags().Bool("no-deploy", false, "change the stored vars only; the next release, app restart or app run applies it")
	s.leaf(g, unset, keys.ConfigWrite, scopeOf, func(cmd *cobra.Command, args []string) error {
		if _, err := s.getApp(cmd, app); err != nil {
			return err
		}
		vars, err := s.env.Store.GetConfig(cmd.Context(), app.Namespace, app.Name)
		if err != nil {
			return err
		}
		var gone []string
		for _, k := range args[1:] {
			if _, ok := vars[k]; !ok {
				return fmt.Errorf("config var %s is not set on %s", names.Quote(k), app)
			}
			if !slices.Contains(gone, k) {
				gone = append(gone, k)
			}
		}
		return s.changeConfig(cmd, app, nil, gone, !*unsetNoDeploy, say(cmd))
	})

	list := &cobra.Command{Use: "list NS/APP", Short: "List config vars as KEY=VALUE", Args: argsN(1, "NS/APP")}
	format := formatFlag(list)
	s.leaf(g, list, keys.ConfigRead, func(cmd *cobra.Command, args []string) (scope, error) {
		if err := checkFormat(*format); err != nil {
			return scope{}, err
		}
		return scopeOf(cmd, args)
	}, func(cmd *cobra.Command, _ []string) error {
		if _, err := s.getApp(cmd, app); err != nil {
			return err
		}
		vars, err := s.env.Store.GetConfig(cmd.Context(), app.Namespace, app.Name)
		if err != nil {
			return err
		}
		if vars == nil {
			vars = map[string]string{}
		}
		if *format == "json" {
			return output(cmd, *format, vars, nil)
		}
		// Not through the tabwriter: values may hold tabs.
		var b strings.Builder
		for _, k := range slices.Sorted(maps.Keys(vars)) {
			fmt.Fprintf(&b, "%s=%s\n", k, vars[k])
		}
		_, err = io.WriteString(cmd.OutOrStdout(), b.String())
		return err
	})
	return g
}

// checkConfigTotal refuses what would make the app's vars too many or too
// large as a whole (every container gets them all).
func (s *session) checkConfigTotal(cmd *cobra.Command, app names.App, set map[string]string) error {
	vars, err := s.env.Store.GetConfig(cmd.Context(), app.Namespace, app.Name)
	if err != nil {
		return err
	}
	all := maps.Clone(vars)
	if all == nil {
		all = map[string]string{}
	}
	maps.Copy(all, set)
	total := 0
	for k, v := range all {
		total += len(k) + len(v)
	}
	if len(all) > MaxConfigVars {
		return fmt.Errorf("%s would have %d config vars; the limit is %d", app, len(all), MaxConfigVars)
	}
	if total > MaxConfigTotal {
		return fmt.Errorf("%s's config vars would take %d bytes; the limit is %d bytes (256 KiB) in all", app, total, MaxConfigTotal)
	}
	return nil
}

// changeConfig stores the change and, with deploy, rolls it out; where no
// server runs (the local CLI) it only stores it.
func (s *session) changeConfig(cmd *cobra.Command, app names.App, set map[string]string, unset []string, deploy bool, out func(string)) error {
	if s.env.Lifecycle == nil {
		if deploy {
			return errors.New("changing config vars rolls out a release, which the server does: use ssh upscale@HOST " +
				strings.TrimPrefix(cmd.CommandPath(), cmd.Root().CommandPath()+" ") + " ..., or --no-deploy")
		}
		_, err := s.env.Store.SetConfig(cmd.Context(), app.Namespace, app.Name, set, unset)
		if err == nil {
			out("-----> stored; the next release applies it")
		}
		return err
	}
	return s.env.Lifecycle.SetConfig(s.ctx(cmd), app, set, unset, deploy, out)
}

// ctx is the command's context with who runs it, for releases and events.
func (s *session) ctx(cmd *cobra.Command) context.Context {
	return deploy.WithBy(cmd.Context(), s.inv.Principal.Name)
}
