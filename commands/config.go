package commands

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/backend"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
)

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
			return sc, usagef("%s needs KEY=VALUE pairs after %s", cmd.CommandPath(), app)
		}
		pairs = map[string]string{}
		for _, a := range args[1:] {
			k, v, ok := strings.Cut(a, "=")
			if !ok {
				return sc, usagef("%s is not KEY=VALUE", names.Quote(msgtext.Truncate(a, 80)))
			}
			if err := backend.CheckConfigKey(k); err != nil {
				return sc, err
			}
			if _, dup := pairs[k]; dup {
				return sc, fmt.Errorf("config var %s is given twice", k)
			}
			if err := backend.CheckConfigValue(k, v); err != nil {
				return sc, err
			}
			pairs[k] = v
		}
		if *stdinKey != "" {
			if err := backend.CheckConfigKey(*stdinKey); err != nil {
				return sc, err
			}
			if _, dup := pairs[*stdinKey]; dup {
				return sc, fmt.Errorf("config var %s is given twice", *stdinKey)
			}
		}
		return sc, nil
	}, func(cmd *cobra.Command, _ []string) error {
		if *stdinKey != "" {
			if s.inv.Stdin == nil {
				return errors.New("--stdin: no standard input")
			}
			b, err := io.ReadAll(io.LimitReader(s.inv.Stdin, backend.MaxConfigValue+1))
			if err != nil {
				return fmt.Errorf("reading %s from standard input: %w", *stdinKey, err)
			}
			v := strings.TrimSuffix(string(b), "\n")
			if len(b) > backend.MaxConfigValue {
				return fmt.Errorf("config var %s is too large: over %d bytes, the limit is %d bytes (32 KiB) per value", *stdinKey, backend.MaxConfigValue, backend.MaxConfigValue)
			}
			pairs[*stdinKey] = v
		}
		return s.needsServer(cmd, s.env.Backend.SetConfig(cmd.Context(), s.inv.Principal, app, pairs, !*noDeploy, say(cmd)))
	})

	get := &cobra.Command{Use: "get NS/APP KEY", Short: "Print one config var's value", Args: argsN(2, "NS/APP and KEY")}
	s.leaf(g, get, keys.ConfigRead, scopeOf, func(cmd *cobra.Command, args []string) error {
		v, err := s.env.Backend.ConfigVar(cmd.Context(), s.inv.Principal, app, args[1])
		if err != nil {
			return err
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
		return s.needsServer(cmd, s.env.Backend.UnsetConfig(cmd.Context(), s.inv.Principal, app, args[1:], !*unsetNoDeploy, say(cmd)))
	})

	list := &cobra.Command{Use: "list NS/APP", Short: "List config vars as KEY=VALUE", Args: argsN(1, "NS/APP")}
	format := formatFlag(list)
	s.leaf(g, list, keys.ConfigRead, func(cmd *cobra.Command, args []string) (scope, error) {
		if err := checkFormat(*format); err != nil {
			return scope{}, err
		}
		return scopeOf(cmd, args)
	}, func(cmd *cobra.Command, _ []string) error {
		vars, err := s.env.Backend.ConfigVars(cmd.Context(), s.inv.Principal, app)
		if err != nil {
			return err
		}
		if *format == "json" {
			return output(cmd, *format, vars, nil)
		}
		if len(vars) == 0 {
			// On stderr: stdout stays KEY=VALUE lines for scripts (> .env).
			fmt.Fprintf(cmd.ErrOrStderr(), "%s has no config vars; set one with: %s config set %s KEY=VALUE\n", app, s.inv.Prog, app)
			return nil
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

// needsServer turns the backend's ErrNeedsServer for a config change into
// what to run instead: the same command over ssh, or --no-deploy.
func (s *session) needsServer(cmd *cobra.Command, err error) error {
	if errors.Is(err, backend.ErrNeedsServer) {
		return errors.New("changing config vars rolls out a release, which the server does: use ssh upscale@HOST " +
			strings.TrimPrefix(cmd.CommandPath(), cmd.Root().CommandPath()+" ") + " ..., or --no-deploy")
	}
	return err
}
