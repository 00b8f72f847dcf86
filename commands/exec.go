package commands

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/backend"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
)

// execTimeoutStatus is app exec's exit status when the command hit its
// time limit, as with timeout(1).
const execTimeoutStatus = 124

// appExec is app exec: a one-off command in a fresh container of the live
// release, its output streamed, its exit status passed through.
func (s *session) appExec(g *cobra.Command) {
	c := &cobra.Command{
		Use:   "exec NS/APP -- COMMAND [ARG...]",
		Short: "Run a one-off command in a fresh container of the live release",
		Long: "Run a one-off command in a fresh container of the app's live release, with its\n" +
			"environment (app.yaml env and config vars). Output (stdout and stderr, merged)\n" +
			"streams back as it comes; the exit status is the command's; the container is\n" +
			"removed when the command ends, at the time limit, or when the session ends.\n" +
			"Stdin is not forwarded: the command reads nothing. Words after -- are the\n" +
			"command and its arguments as given; for shell syntax, run sh -c '...'. Over ssh,\n" +
			"which joins words with spaces and so drops your quotes, the words after\n" +
			"sh -c (or bash -c) are the script: sh -c 'exit 7' exits 7.",
		Example: "  " + s.inv.Prog + " app exec acme/web -- python3 manage.py migrate\n" +
			"  " + s.inv.Prog + " app exec acme/web -- sh -c 'echo $DATABASE_URL; exit 7'\n" +
			"  " + s.inv.Prog + " app exec --timeout 10m acme/web -- ./cleanup",
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 || len(args) < 2 {
				return fmt.Errorf("%s needs NS/APP -- COMMAND [ARG...]", cmd.CommandPath())
			}
			return nil
		},
	}
	timeout := c.Flags().Duration("timeout", backend.DefaultExecTimeout, "stop the command after this long")
	var app names.App
	s.leaf(g, c, keys.AppExec, func(_ *cobra.Command, args []string) (sc scope, err error) {
		if *timeout <= 0 || *timeout > backend.MaxExecTimeout {
			return scope{}, fmt.Errorf("--timeout must be more than 0 and at most %s, not %s", backend.MaxExecTimeout, *timeout)
		}
		app, sc, err = appArg(args)
		return sc, err
	}, func(cmd *cobra.Command, args []string) error {
		stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
		argv := args[1:]
		if s.inv.SSH {
			argv = shellScript(argv)
		}
		code, err := s.env.Backend.Exec(cmd.Context(), s.inv.Principal, app, argv, *timeout,
			func(l string) { fmt.Fprintln(stdout, l) },
			func(l string) { fmt.Fprintln(stderr, l) })
		switch {
		case errors.Is(err, backend.ErrExecTimeout):
			fmt.Fprintf(stderr, "error: %s\n", msgtext.OneLine(err.Error()))
			return exitStatus(execTimeoutStatus)
		case errors.Is(err, backend.ErrNeedsServer):
			return s.overSSH(cmd, app, err)
		case err != nil:
			if cmd.Context().Err() != nil {
				return exitStatus(255) // the session is gone: nobody reads this
			}
			return err
		case code != 0:
			return exitStatus(code)
		}
		return nil
	})
}

// shellScript puts back together a shell's -c script that ssh split:
// `ssh host app exec a/b -- sh -c 'exit 7'` reaches the server as the
// line "... sh -c exit 7", which would run the script "exit" with $0=7
// and exit 0. Nobody means that over ssh, so the words after -c are
// joined into the one script they were typed as; a script quoted twice
// (one word) is left as it is.
func shellScript(argv []string) []string {
	if len(argv) <= 3 || argv[1] != "-c" {
		return argv
	}
	switch argv[0] {
	case "sh", "bash", "dash", "/bin/sh", "/bin/bash", "/bin/dash", "/usr/bin/bash":
		return []string{argv[0], "-c", strings.Join(argv[2:], " ")}
	}
	return argv
}
