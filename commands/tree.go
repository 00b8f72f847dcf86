// Package commands is Upscale's one command tree. The same tree serves ssh
// sessions (`ssh upscale@host app list`) and the local admin CLI on the
// server box (`upscale app list`); a fresh tree is built per invocation.
//
// Every command is gated in one place, the root's PersistentPreRunE: a
// command without a registered gate is refused (fail closed).
package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/backend"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
)

// Env is what commands act on.
type Env struct {
	// Backend holds the use cases the commands call; it authorizes every
	// call itself.
	Backend *backend.Backend
	// Domain is the apps' parent domain (APP.NS.DOMAIN), for help texts
	// and the check of custom domains.
	Domain string
	// Git serves git-receive-pack / git-upload-pack; nil where git is not
	// served (the local CLI).
	Git GitService
	Log *slog.Logger
}

// GitService runs a git service for an authorized principal on the
// session's stdio and returns git's exit status.
type GitService interface {
	Serve(ctx context.Context, service string, app names.App, p keys.Principal, stdin io.Reader, stdout, stderr io.Writer) int
}

// Invocation is who runs a command and where its output goes.
type Invocation struct {
	Principal keys.Principal
	// Prog is how users invoke commands, used in help and hints:
	// "ssh upscale@host" or "upscale".
	Prog string
	// Remote is the git remote prefix users push to, e.g.
	// "ssh://upscale@10.0.0.1:2222".
	Remote string
	// SSH says the words came through ssh, which joins the user's words
	// with spaces and so loses one level of their quotes.
	SSH    bool
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// gate is how one command is authorized.
type gate struct {
	action keys.Action
	// scope resolves what the command acts on from its flags and args. It
	// runs before authorization, so it must not reveal anything a
	// principal without access could not know anyway.
	scope func(cmd *cobra.Command, args []string) (scope, error)
}

type scope struct {
	// action, when set, replaces the gate's action: one command can be
	// several acts (keys add vs keys add --admin).
	action keys.Action
	target keys.Target
	// denied is what a principal without access is told; for things
	// that belong to someone it reads exactly like "not found".
	denied string
}

type session struct {
	env     *Env
	inv     Invocation
	gates   map[*cobra.Command]gate
	prepare func(*cobra.Command, *Invocation) error
	// running is set once cobra has parsed the command line: later errors
	// exit 1, errors before that are usage errors (exit 2).
	running bool
}

// usageError is a command line of the wrong shape found after cobra's
// parsing (config set NS/APP without pairs): exit status 2, as cobra's own.
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// exitStatus carries a status (git's) through cobra without a message.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// Tree is the command tree of one invocation.
type Tree struct {
	Root *cobra.Command
	s    *session
}

// New builds the command tree for one invocation. prepare, when not nil,
// runs before authorization (the local CLI opens its store and learns its
// git remote there).
func New(env *Env, inv Invocation, prepare func(*cobra.Command, *Invocation) error) *Tree {
	s := &session{env: env, inv: inv, gates: map[*cobra.Command]gate{}, prepare: prepare}
	root := &cobra.Command{
		Use: "upscale",
		// The display name shows "ssh upscale@host" whole in help and errors.
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: inv.Prog},
		Short:       "Upscale: git push to deploy, on your own machines",
		Long: "Upscale runs your applications from a git push. Manage namespaces, apps and keys with:\n\n" +
			"  " + inv.Prog + " namespace create NS\n" +
			"  " + inv.Prog + " app create NS/APP\n" +
			"  " + inv.Prog + " keys add --namespace NS --name NAME --public \"$(cat ~/.ssh/id_ed25519.pub)\"\n" +
			"  git push upscale master",
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		PersistentPreRunE: s.authorize,
		Args:              noArgs,
		RunE:              func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	s.gates[root] = gate{action: keys.Help, scope: none}
	root.SetIn(inv.Stdin)
	root.SetOut(inv.Stdout)
	root.SetErr(inv.Stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%s: %v (see %s --help)", c.CommandPath(), err, c.CommandPath())
	})
	help := &cobra.Command{
		Use:   "help [COMMAND]",
		Short: "Show help for a command",
		RunE: func(c *cobra.Command, args []string) error {
			target, _, err := c.Root().Find(args)
			if err != nil || target == nil {
				return fmt.Errorf("unknown command %q; run %s help", strings.Join(args, " "), inv.Prog)
			}
			return target.Help()
		},
	}
	s.gates[help] = gate{action: keys.Help, scope: none}
	root.SetHelpCommand(help)

	root.AddCommand(
		s.namespaceCommands(),
		s.appCommands(),
		s.keysCommands(),
		s.runtimesCommands(),
		s.hostsCommands(),
		s.domainsCommands(),
		s.certsCommands(),
	)
	root.AddCommand(s.configCommands())
	root.AddCommand(s.releasesCommands()...)
	root.AddCommand(s.gitCommands()...)
	return &Tree{Root: root, s: s}
}

// Execute runs args and returns the exit status: 0, 1 when the command
// failed, 2 for a usage error, or git's own status. Errors are written to
// stderr as one line.
func (t *Tree) Execute(ctx context.Context, args []string) int {
	t.Root.SetArgs(args)
	err := t.Root.ExecuteContext(ctx)
	var st exitStatus
	switch {
	case err == nil:
		return 0
	case errors.As(err, &st):
		return int(st)
	}
	fmt.Fprintf(t.s.inv.Stderr, "error: %s\n", msgtext.OneLine(err.Error()))
	if t.s.running && !errors.As(err, new(usageError)) {
		return 1
	}
	return 2
}

// Gated reports whether cmd has a gate; a command added outside New (the
// local-only `upscale server`) has none and must bypass the root's hook
// itself.
func (t *Tree) Gated(cmd *cobra.Command) bool {
	_, ok := t.s.gates[cmd]
	return ok
}

func (s *session) authorize(cmd *cobra.Command, args []string) error {
	// Parsing is done: from here on failures are the command's, not usage.
	s.running = true
	g, ok := s.gates[cmd]
	if !ok {
		return fmt.Errorf("not allowed: %s", cmd.CommandPath())
	}
	// Help needs nothing opened (and must not create a data directory).
	if s.prepare != nil && g.action != keys.Help {
		if err := s.prepare(cmd, &s.inv); err != nil {
			return err
		}
	}
	sc, err := g.scope(cmd, args)
	if err != nil {
		return err
	}
	action := g.action
	if sc.action != "" {
		action = sc.action
	}
	if err := keys.Authorize(s.inv.Principal, action, sc.target); err != nil {
		if sc.denied != "" {
			return errors.New(sc.denied)
		}
		return fmt.Errorf("not allowed: %q needs an admin key", strings.TrimPrefix(cmd.CommandPath(), cmd.Root().CommandPath()+" "))
	}
	return nil
}
