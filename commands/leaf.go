package commands

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
)

type scopeFunc func(cmd *cobra.Command, args []string) (scope, error)

// group adds a parent command that only lists its children.
func (s *session) group(use, short string, aliases ...string) *cobra.Command {
	c := &cobra.Command{
		Use:     use,
		Short:   short,
		Aliases: aliases,
		Args:    noArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	s.gates[c] = gate{action: keys.Help, scope: none}
	return c
}

// leaf registers c's gate, wraps its run function and adds it to parent
// (when not nil).
func (s *session) leaf(parent, c *cobra.Command, action keys.Action, sc scopeFunc, run func(cmd *cobra.Command, args []string) error) *cobra.Command {
	c.RunE = run
	s.gates[c] = gate{action: action, scope: sc}
	if parent != nil {
		parent.AddCommand(c)
	}
	return c
}

func none(*cobra.Command, []string) (scope, error) { return scope{}, nil }

// noArgs is cobra.NoArgs with a message that says what to do instead.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if cmd.HasSubCommands() {
		return fmt.Errorf("unknown command %s for %q; run %s --help", names.Quote(args[0]), cmd.CommandPath(), cmd.CommandPath())
	}
	return fmt.Errorf("%s takes no arguments, got %s", cmd.CommandPath(), names.Quote(strings.Join(args, " ")))
}

// argsN wants exactly n positional args, described by what.
func argsN(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == n {
			return nil
		}
		return fmt.Errorf("%s needs %s, got %d argument(s)", cmd.CommandPath(), what, len(args))
	}
}

// maxArgs accepts up to n positional args.
func maxArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) <= n {
			return nil
		}
		return fmt.Errorf("%s takes at most %s, got %s", cmd.CommandPath(), what, names.Quote(strings.Join(args, " ")))
	}
}

// appArg resolves "NS/APP" from args[0] into an app scope whose denial
// reads like "not found".
func appArg(args []string) (names.App, scope, error) {
	app, err := names.ParseApp(args[0])
	if err != nil {
		return names.App{}, scope{}, err
	}
	return app, scope{target: keys.Target{Namespace: app.Namespace, App: app.Name}, denied: appNotFound(app)}, nil
}

func appNotFound(app names.App) string { return fmt.Sprintf("app %s not found", app) }

func namespaceNotFound(ns string) string { return fmt.Sprintf("namespace %s not found", ns) }

// defaultNamespace is the namespace a command means when none is given:
// the caller's own when the key belongs to one.
func (s *session) defaultNamespace(flag string) string {
	if flag != "" {
		return flag
	}
	return s.inv.Principal.Namespace
}
