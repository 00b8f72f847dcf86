package commands

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
)

type eventView struct {
	At      string `json:"at"`
	Kind    string `json:"kind"`
	By      string `json:"by"`
	Message string `json:"message"`
}

// eventsCommand is app events NS/APP.
func (s *session) eventsCommand(g *cobra.Command) {
	c := &cobra.Command{Use: "events NS/APP", Short: "What happened to an app, who did it and when, newest first", Args: argsN(1, "NS/APP")}
	format := formatFlag(c)
	limit := c.Flags().IntP("number", "n", 50, "show at most this many (0: all)")
	var app names.App
	s.leaf(g, c, keys.AppEvents, func(_ *cobra.Command, args []string) (scope, error) {
		if err := checkFormat(*format); err != nil {
			return scope{}, err
		}
		if *limit < 0 {
			return scope{}, fmt.Errorf("-n must be 0 or more, not %d", *limit)
		}
		var sc scope
		var err error
		app, sc, err = appArg(args)
		return sc, err
	}, func(cmd *cobra.Command, _ []string) error {
		evs, err := s.env.Backend.Events(cmd.Context(), s.inv.Principal, app, *limit)
		if err != nil {
			return err
		}
		views := []eventView{}
		for _, e := range evs {
			views = append(views, eventView{At: when(e.At), Kind: e.Kind, By: e.By, Message: e.Message})
		}
		return output(cmd, *format, views, func(w io.Writer) {
			row(w, "WHEN", "EVENT", "BY", "WHAT")
			for _, v := range views {
				row(w, v.At, v.Kind, dash(v.By), msgtext.OneLine(v.Message))
			}
		})
	})
}
