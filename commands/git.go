package commands

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
)

// gitCommands are the hidden commands git runs over ssh:
// `git-receive-pack 'ns/app.git'` and `git-upload-pack 'ns/app.git'`.
func (s *session) gitCommands() []*cobra.Command {
	var out []*cobra.Command
	for _, svc := range []struct {
		name   string
		action keys.Action
	}{
		{"git-receive-pack", keys.GitPush},
		{"git-upload-pack", keys.GitFetch},
	} {
		c := &cobra.Command{
			Use:                svc.name + " REPO",
			Hidden:             true,
			Args:               argsN(1, "a repository path"),
			DisableFlagParsing: true,
		}
		var app names.App
		push := svc.action == keys.GitPush
		s.leaf(nil, c, svc.action, func(_ *cobra.Command, args []string) (scope, error) {
			var err error
			app, err = names.ParseRepoPath(args[0])
			denied := repoNotFound(args[0])
			if push && err == nil {
				denied = s.pushNotFound(app)
			}
			return scope{target: keys.Target{Namespace: app.Namespace, App: app.Name}, denied: denied}, err
		}, func(cmd *cobra.Command, args []string) error {
			if s.env.Git == nil {
				return errors.New("git is served over ssh only")
			}
			if push {
				_, created, err := s.env.Backend.PushTarget(cmd.Context(), s.inv.Principal, app)
				switch {
				case errors.Is(err, keys.ErrDenied):
					return errors.New(s.pushNotFound(app))
				case err != nil:
					return s.quotaError(err)
				case created:
					fmt.Fprintf(s.inv.Stderr, "-----> Created app %s: it did not exist, and your first push creates it (as app create would)\n", app)
				}
			} else if _, err := s.env.Backend.FindApp(cmd.Context(), s.inv.Principal, app); err != nil {
				return errors.New(repoNotFound(args[0]))
			}
			if code := s.env.Git.Serve(cmd.Context(), svc.name, app, s.inv.Principal, s.inv.Stdin, s.inv.Stdout, s.inv.Stderr); code != 0 {
				return exitStatus(code)
			}
			return nil
		})
		out = append(out, c)
	}
	return out
}

func repoNotFound(path string) string {
	return fmt.Sprintf("repository %s not found", names.Quote(path))
}

// pushNotFound is what a push to an app that is not there (or not the
// pusher's) reads: where to create it.
func (s *session) pushNotFound(app names.App) string {
	return fmt.Sprintf("app %s not found; create it first with: %s app create %s", app, s.inv.Prog, app)
}
