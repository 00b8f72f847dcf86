package commands

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/backend"
	"github.com/upscalehq/upscale/deploy"
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
			err := s.env.Backend.Run(cmd.Context(), s.inv.Principal, app, say(cmd))
			if errors.Is(err, backend.ErrNeedsServer) {
				return errors.New("this command runs over ssh, where the server runs apps: ssh upscale@HOST app run " + app.String())
			}
			return err
		}},
		{"stop NS/APP", "Stop every instance of an app (it answers 503 until app run)", keys.AppStop, func(cmd *cobra.Command) error {
			return s.env.Apps.Stop(s.ctx(cmd), app, say(cmd))
		}},
		{"restart NS/APP", "Replace an app's instances with fresh ones, without downtime", keys.AppRestart, func(cmd *cobra.Command) error {
			if err := s.env.Apps.Restart(s.ctx(cmd), app, say(cmd)); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "=====> %s restarted\n", app)
			return nil
		}},
	} {
		s.leaf(g, &cobra.Command{Use: c.use, Short: c.short, Args: argsN(1, "NS/APP")}, c.action, scopeOf, func(cmd *cobra.Command, _ []string) error {
			if err := s.needApps(cmd, app); err != nil {
				return err
			}
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
		if err := s.needApps(cmd, app); err != nil {
			return err
		}
		procs, err := s.env.Apps.PS(cmd.Context(), app)
		if err != nil {
			return err
		}
		if procs == nil {
			procs = []deploy.Process{}
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
	lines := logs.Flags().IntP("lines", "n", 100, "how many of the last lines to show per instance")
	s.leaf(g, logs, keys.AppLogs, func(cmd *cobra.Command, args []string) (scope, error) {
		if *lines < 0 || *lines > 10000 {
			return scope{}, fmt.Errorf("-n must be from 0 to 10000, not %d", *lines)
		}
		return scopeOf(cmd, args)
	}, func(cmd *cobra.Command, _ []string) error {
		if err := s.needApps(cmd, app); err != nil {
			return err
		}
		return s.env.Apps.Logs(cmd.Context(), app, *lines, *follow, say(cmd))
	})
	s.scaleCommand(g)
	s.eventsCommand(g)
}

// needApps fails where nothing runs apps (the local CLI), and for an app
// that does not exist.
func (s *session) needApps(cmd *cobra.Command, app names.App) error {
	if _, err := s.getApp(cmd, app); err != nil {
		return err
	}
	if s.env.Apps == nil {
		return errors.New("this command runs over ssh, where the server runs apps: ssh upscale@HOST " + cmd.CommandPath()[len(cmd.Root().CommandPath())+1:] + " " + app.String())
	}
	return nil
}

func uptime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String()
}
