package commands

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/backend"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
)

type releaseView struct {
	Version int    `json:"version"`
	Commit  string `json:"commit"`
	Subject string `json:"subject"`
	Author  string `json:"author"`
	By      string `json:"by"`
	At      string `json:"at"`
	Status  string `json:"status"` // live, superseded, failed, pruned, building, built
	Change  string `json:"change,omitempty"`
	Failure string `json:"failure,omitempty"`
}

func releaseStatus(r backend.Release) string {
	if r.Pruned && r.Status != backend.ReleaseLive && r.Status != backend.ReleaseFailed {
		return "pruned"
	}
	return string(r.Status)
}

// releasesCommands are releases NS/APP and rollback NS/APP [vN].
func (s *session) releasesCommands() []*cobra.Command {
	var app names.App
	scopeOf := func(_ *cobra.Command, args []string) (sc scope, err error) {
		app, sc, err = appArg(args)
		return sc, err
	}
	list := &cobra.Command{Use: "releases NS/APP", Short: "List an app's releases, newest first", Args: argsN(1, "NS/APP")}
	format := formatFlag(list)
	limit := list.Flags().IntP("number", "n", 50, "show at most this many (0: all)")
	s.leaf(nil, list, keys.ReleasesList, func(cmd *cobra.Command, args []string) (scope, error) {
		if err := checkFormat(*format); err != nil {
			return scope{}, err
		}
		if *limit < 0 {
			return scope{}, fmt.Errorf("-n must be 0 or more, not %d", *limit)
		}
		return scopeOf(cmd, args)
	}, func(cmd *cobra.Command, _ []string) error {
		rels, err := s.env.Backend.Releases(cmd.Context(), s.inv.Principal, app, *limit)
		if err != nil {
			return err
		}
		views := []releaseView{}
		for _, r := range rels {
			views = append(views, releaseView{Version: r.Version, Commit: r.Commit, Subject: r.Subject, Author: r.Author,
				By: r.By, At: when(r.CreatedAt), Status: releaseStatus(r), Change: r.Config.Note, Failure: r.Failure})
		}
		return output(cmd, *format, views, func(w io.Writer) {
			row(w, "RELEASE", "COMMIT", "SUBJECT", "AUTHOR", "BY", "WHEN", "STATUS", "CHANGE")
			for _, v := range views {
				row(w, "v"+strconv.Itoa(v.Version), msgtext.Short(v.Commit), msgtext.Truncate(msgtext.OneLine(v.Subject), 50), dash(v.Author),
					dash(v.By), v.At, v.Status, dash(v.Change))
			}
		})
	})

	rb := &cobra.Command{
		Use:   "rollback NS/APP [vN]",
		Short: "Make an older release's code and config live again, as a new release (no rebuild)",
		Long: "Roll back: a new release runs vN's artifact and config vars, rolled out without downtime.\n" +
			"Without vN, the newest release before the live one that did not fail.\n" +
			"Only the last 10 releases keep their artifact; older ones need a push to rebuild.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return fmt.Errorf("%s needs NS/APP and optionally a release (v3), got %d argument(s)", cmd.CommandPath(), len(args))
			}
			return nil
		},
	}
	version := 0
	s.leaf(nil, rb, keys.Rollback, func(cmd *cobra.Command, args []string) (scope, error) {
		version = 0
		if len(args) == 2 {
			v, err := strconv.Atoi(strings.TrimPrefix(args[1], "v"))
			if err != nil || v < 1 {
				return scope{}, fmt.Errorf("%s is not a release; write it as v3", names.Quote(msgtext.Truncate(args[1], 40)))
			}
			version = v
		}
		return scopeOf(cmd, args)
	}, func(cmd *cobra.Command, _ []string) error {
		rel, err := s.env.Backend.Rollback(cmd.Context(), s.inv.Principal, app, version, func(l string) { fmt.Fprintln(cmd.OutOrStdout(), l) })
		if errors.Is(err, backend.ErrNeedsServer) {
			return errors.New("this command runs over ssh, where the server runs apps: ssh upscale@HOST rollback " + app.String())
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "=====> %s: v%d is live\n", rel.Config.Note, rel.Version)
		return nil
	})
	return []*cobra.Command{list, rb}
}
