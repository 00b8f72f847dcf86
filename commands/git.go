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
		s.leaf(nil, c, svc.action, func(_ *cobra.Command, args []string) (scope, error) {
			var err error
			app, err = names.ParseRepoPath(args[0])
			return scope{target: keys.Target{Namespace: app.Namespace, App: app.Name}, denied: repoNotFound(args[0])}, err
		}, func(cmd *cobra.Command, args []string) error {
			if s.env.Git == nil {
				return errors.New("git is served over ssh only")
			}
			if _, err := s.env.Backend.FindApp(cmd.Context(), s.inv.Principal, app); err != nil {
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
