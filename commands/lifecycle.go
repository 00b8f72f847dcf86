package commands

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/backend"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
)

// lifecycleCommands are app run, stop, restart, ps and logs.
func (s *session) lifecycleCommands(g *cobra.Command) {
	var app names.App
	scopeOf := func(_ *cobra.Command, args []string) (sc scope, err error) {
		app, sc, err = appArg(args)
		return sc, err
	}
	say := func(cmd *cobra.Command) func(string) {
		return func(l string) { fmt.Fprintln(cmd.OutOrStdout(), l) }
	}
	for _, c := range []struct {
		use, short string
		action     keys.Action
		run        func(cmd *cobra.Command) error
	}{
		{"run NS/APP", "Deploy the deploy branch's head again, or start a stopped app", keys.AppRun, func(cmd *cobra.Command) error {
			return s.overSSH(cmd, app, s.env.Backend.Run(cmd.Context(), s.inv.Principal, app, say(cmd)))
		}},
		{"stop NS/APP", "Stop every instance of an app (it answers 503 until app run)", keys.AppStop, func(cmd *cobra.Command) error {
			return s.overSSH(cmd, app, s.env.Backend.Stop(cmd.Context(), s.inv.Principal, app, say(cmd)))
		}},
		{"restart NS/APP", "Replace an app's instances with fresh ones, without downtime", keys.AppRestart, func(cmd *cobra.Command) error {
			if err := s.env.Backend.Restart(cmd.Context(), s.inv.Principal, app, say(cmd)); err != nil {
				return s.overSSH(cmd, app, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "=====> %s restarted\n", app)
			return nil
		}},
	} {
		s.leaf(g, &cobra.Command{Use: c.use, Short: c.short, Args: argsN(1, "NS/APP")}, c.action, scopeOf, func(cmd *cobra.Command, _ []string) error {
			return c.run(cmd)
		})
	}

	ps := &cobra.Command{Use: "ps NS/APP", Short: "List an app's instances", Args: argsN(1, "NS/APP")}
	format := formatFlag(ps)
	s.leaf(g, ps, keys.AppPS, func(cmd *cobra.Command, args []string) (scope, error) {
		if err := checkFormat(*format); err != nil {
			return scope{}, err
		}
		return scopeOf(cmd, args)
	}, func(cmd *cobra.Command, _ []string) error {
		procs, err := s.env.Backend.Processes(cmd.Context(), s.inv.Principal, app)
		if err != nil {
			return s.overSSH(cmd, app, err)
		}
		if len(procs) == 0 && *format == "text" {
			fmt.Fprintln(cmd.OutOrStdout(), s.noInstances(cmd, app))
			return nil
		}
		return output(cmd, *format, procs, func(w io.Writer) {
			row(w, "INSTANCE", "HOST", "ADDRESS", "RELEASE", "STATE", "UPTIME", "RESTARTS")
			for _, p := range procs {
				restarts := strconv.Itoa(p.Restarts)
				if p.Restarts > 0 {
					restarts += fmt.Sprintf(" (last exit %d)", p.LastExit)
				}
				row(w, p.Name, p.Host, p.Addr, "v"+strconv.Itoa(p.Release), p.State, uptime(p.StartedAt), restarts)
			}
		})
	})

	logs := &cobra.Command{Use: "logs NS/APP", Short: "Show an app's output (-f to follow)", Args: argsN(1, "NS/APP")}
	follow := logs.Flags().BoolP("follow", "f", false, "keep printing new output")
	lines := logs.Flags().IntP("lines", "n", 100, "how many of the app's last lines to show (of all its instances)")
	s.leaf(g, logs, keys.AppLogs, func(cmd *cobra.Command, args []string) (scope, error) {
		if *lines < 0 || *lines > backend.MaxLogLines {
			return scope{}, fmt.Errorf("-n must be from 0 to %d, not %d", backend.MaxLogLines, *lines)
		}
		return scopeOf(cmd, args)
	}, func(cmd *cobra.Command, _ []string) error {
		return s.overSSH(cmd, app, s.env.Backend.Logs(cmd.Context(), s.inv.Principal, app, *lines, *follow, say(cmd)))
	})
	s.scaleCommand(g)
	s.eventsCommand(g)
}

// noInstances says why app runs no instance and what starts one.
func (s *session) noInstances(cmd *cobra.Command, app names.App) string {
	info, err := s.env.Backend.AppInfo(cmd.Context(), s.inv.Principal, app)
	switch {
	case err != nil:
		return fmt.Sprintf("No instances of %s run.", app)
	case info.Stopped:
		return fmt.Sprintf("No instances of %s run: it is stopped (%s app run %s starts it).", app, s.inv.Prog, app)
	case info.Live == nil:
		return fmt.Sprintf("No instances of %s run: nothing is deployed yet (git push deploys it).", app)
	}
	return fmt.Sprintf("No instances of %s run: it is scaled to 0 (%s app scale %s 1 starts one).", app, s.inv.Prog, app)
}

// overSSH turns the backend's ErrNeedsServer, where nothing runs apps
// (the local CLI), into the same command over ssh.
func (s *session) overSSH(cmd *cobra.Command, app names.App, err error) error {
	if errors.Is(err, backend.ErrNeedsServer) {
		return errors.New("this command runs over ssh, where the server runs apps: ssh upscale@HOST " + cmd.CommandPath()[len(cmd.Root().CommandPath())+1:] + " " + app.String())
	}
	return err
}

func uptime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String()
}
