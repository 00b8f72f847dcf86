package commands

import (
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/backend"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
)

type namespaceView struct {
	Name      string `json:"name"`
	Apps      int    `json:"apps"`
	CreatedAt string `json:"created_at"`
}

func (s *session) namespaceCommands() *cobra.Command {
	g := s.group("namespace", "Create, list, show and delete namespaces (tenants); set their quotas", "namespaces", "ns")

	var createFlag string
	create := &cobra.Command{
		Use:     "create NAME",
		Short:   "Create a namespace (admins)",
		Example: "  " + s.inv.Prog + " namespace create test\n  " + s.inv.Prog + " namespace create --namespace test",
		Args:    maxArgs(1, "one NAME"),
	}
	create.Flags().StringVar(&createFlag, "namespace", "", "namespace name")
	var ns string
	s.leaf(g, create, keys.NamespaceCreate, func(_ *cobra.Command, args []string) (scope, error) {
		var err error
		ns, err = oneName("namespace", createFlag, args)
		return scope{target: keys.Target{Namespace: ns}}, err
	}, func(cmd *cobra.Command, _ []string) error {
		if _, err := s.env.Backend.CreateNamespace(cmd.Context(), s.inv.Principal, ns); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Namespace %s created.\n", ns)
		return nil
	})

	list := &cobra.Command{Use: "list", Short: "List namespaces", Args: noArgs}
	format := formatFlag(list)
	s.leaf(g, list, keys.NamespaceList, formatScope(format), func(cmd *cobra.Command, _ []string) error {
		all, err := s.env.Backend.ListNamespaces(cmd.Context(), s.inv.Principal)
		if err != nil {
			return err
		}
		views := []namespaceView{}
		for _, n := range all {
			views = append(views, namespaceView{Name: n.Name, Apps: n.Apps, CreatedAt: when(n.CreatedAt)})
		}
		return output(cmd, *format, views, func(w io.Writer) {
			row(w, "NAMESPACE", "APPS", "CREATED")
			for _, v := range views {
				row(w, v.Name, strconv.Itoa(v.Apps), v.CreatedAt)
			}
		})
	})

	var delFlag string
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an empty namespace and its keys (admins)",
		Args:  maxArgs(1, "one NAME"),
	}
	del.Flags().StringVar(&delFlag, "namespace", "", "namespace name")
	s.leaf(g, del, keys.NamespaceDelete, func(_ *cobra.Command, args []string) (scope, error) {
		var err error
		ns, err = oneName("namespace", delFlag, args)
		return scope{target: keys.Target{Namespace: ns}}, err
	}, func(cmd *cobra.Command, _ []string) error {
		err := s.env.Backend.DeleteNamespace(cmd.Context(), s.inv.Principal, ns)
		var notEmpty *backend.NotEmptyError
		switch {
		case errors.As(err, &notEmpty):
			return fmt.Errorf("%w (%s app list --namespace %s)", err, s.inv.Prog, ns)
		case err != nil:
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Namespace %s deleted.\n", ns)
		return nil
	})
	s.namespaceQuotaCommands(g)
	return g
}

// oneName takes a name given either as --flag or as the only argument.
func oneName(kind, flag string, args []string) (string, error) {
	name := flag
	switch {
	case len(args) == 1 && flag != "" && args[0] != flag:
		return "", fmt.Errorf("%s given twice: %s and --%s %s", kind, names.Quote(args[0]), kind, names.Quote(flag))
	case len(args) == 1:
		name = args[0]
	case name == "":
		return "", fmt.Errorf("which %s? give NAME or --%s NAME", kind, kind)
	}
	return name, names.Check(kind, name)
}

// formatScope is the scope of unscoped list commands; it checks --format
// early so a typo fails before any work.
func formatScope(format *string) scopeFunc {
	return func(*cobra.Command, []string) (scope, error) {
		return scope{}, checkFormat(*format)
	}
}
