package commands

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/backend"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
)

// scaleCommand is app scale NS/APP N | TYPE=N...
func (s *session) scaleCommand(g *cobra.Command) {
	c := &cobra.Command{
		Use:   "scale NS/APP N | TYPE=N [TYPE=N...]",
		Short: "Run N web instances, or N of each process type (0 stops them)",
		Long: fmt.Sprintf("Scale an app: `app scale NS/APP 3` runs three web instances; `app scale NS/APP web=2 worker=1`\n"+
			"sets each process type. 0 stops a type (all 0: the app answers 503). At most %d per type.\n"+
			"Scaling starts or removes instances of the live release (new ones healthy before they get traffic)\n"+
			"and makes no new release; later releases keep the counts.", backend.MaxScale),
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return fmt.Errorf("%s needs NS/APP and a count (N, or TYPE=N...)", cmd.CommandPath())
			}
			return nil
		},
	}
	// "app scale acme/web -1" is a count, not a flag.
	c.Flags().SetInterspersed(false)
	var app names.App
	var change map[string]int
	s.leaf(g, c, keys.AppScale, func(_ *cobra.Command, args []string) (scope, error) {
		var sc scope
		var err error
		app, sc, err = appArg(args)
		if err != nil {
			return sc, err
		}
		change, err = parseScale(args[1:])
		return sc, err
	}, func(cmd *cobra.Command, _ []string) error {
		err := s.env.Backend.Scale(cmd.Context(), s.inv.Principal, app, change, func(l string) { fmt.Fprintln(cmd.OutOrStdout(), l) })
		if errors.Is(err, backend.ErrNeedsServer) {
			return errors.New("this command runs over ssh, where the server runs apps: ssh upscale@HOST app scale " + app.String())
		}
		return err
	})
}

var processName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,19}$`)

// parseScale reads "N" (web) or "TYPE=N" pairs.
func parseScale(args []string) (map[string]int, error) {
	change := map[string]int{}
	for _, a := range args {
		typ, n, ok := strings.Cut(a, "=")
		if !ok {
			if len(args) > 1 {
				return nil, usagef("%s: with several counts, write each as TYPE=N (web=2 worker=1)", names.Quote(a))
			}
			typ, n = backend.Web, a
		}
		if !processName.MatchString(typ) {
			return nil, fmt.Errorf("%s is not a process type (like web or worker)", names.Quote(msgtext.Truncate(typ, 40)))
		}
		if _, dup := change[typ]; dup {
			return nil, fmt.Errorf("process type %s is given twice", typ)
		}
		v, err := strconv.Atoi(n)
		if err != nil {
			return nil, fmt.Errorf("%s=%s: the count must be a whole number from 0 to %d", typ, msgtext.Truncate(n, 40), backend.MaxScale)
		}
		if v < 0 || v > backend.MaxScale {
			return nil, fmt.Errorf("%s=%d: the count must be from 0 to %d", typ, v, backend.MaxScale)
		}
		change[typ] = v
	}
	return change, nil
}
