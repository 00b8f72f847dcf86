package commands

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/backend"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
)

type keyView struct {
	Name        string `json:"name"`
	Role        string `json:"role"`
	Namespace   string `json:"namespace,omitempty"`
	App         string `json:"app,omitempty"`
	Type        string `json:"type"`
	Fingerprint string `json:"fingerprint"`
	AddedBy     string `json:"added_by"`
	CreatedAt   string `json:"created_at"`
}

func (s *session) keysCommands() *cobra.Command {
	g := s.group("keys", "Add, list and remove SSH keys", "key")
	s.keysAdd(g)

	list := &cobra.Command{Use: "list", Short: "List keys", Args: noArgs}
	var nsFlag string
	list.Flags().StringVar(&nsFlag, "namespace", "", "only this namespace's keys (default: yours, or all for admins)")
	format := formatFlag(list)
	var ns string
	s.leaf(g, list, keys.KeysList, func(*cobra.Command, []string) (scope, error) {
		if err := checkFormat(*format); err != nil {
			return scope{}, err
		}
		ns = s.defaultNamespace(nsFlag)
		if ns == "" {
			return scope{}, nil
		}
		return scope{target: keys.Target{Namespace: ns}, denied: namespaceNotFound(ns)}, names.Check("namespace", ns)
	}, func(cmd *cobra.Command, _ []string) error {
		all, err := s.env.Backend.ListKeys(cmd.Context(), s.inv.Principal, ns)
		if err != nil {
			return err
		}
		views := make([]keyView, 0, len(all))
		for _, k := range all {
			views = append(views, keyView{Name: k.Name, Role: string(k.Role), Namespace: k.Namespace, App: k.App,
				Type: k.Type, Fingerprint: k.Fingerprint, AddedBy: k.AddedBy, CreatedAt: when(k.CreatedAt)})
		}
		return output(cmd, *format, views, func(w io.Writer) {
			row(w, "NAME", "ROLE", "SCOPE", "TYPE", "FINGERPRINT", "ADDED BY", "ADDED")
			for _, v := range views {
				sc := v.Namespace
				if v.App != "" {
					sc += "/" + v.App
				}
				row(w, v.Name, v.Role, dash(sc), v.Type, v.Fingerprint, v.AddedBy, v.CreatedAt)
			}
		})
	})

	remove := &cobra.Command{
		Use:     "remove NAME|SHA256:FINGERPRINT",
		Short:   "Remove a key by name or fingerprint",
		Aliases: []string{"rm", "delete"},
		Args:    argsN(1, "a key NAME or SHA256:FINGERPRINT"),
	}
	var rmNS string
	remove.Flags().StringVar(&rmNS, "namespace", "", "namespace of the key named NAME (default: yours)")
	s.leaf(g, remove, keys.KeysRemove, func(cmd *cobra.Command, args []string) (scope, error) {
		// A fingerprint needs no namespace; a name is checked as the
		// backend will, so bad input reads the same to everyone.
		if !strings.HasPrefix(args[0], "SHA256:") {
			if err := names.Check("key", args[0]); err != nil {
				return scope{}, err
			}
			if ns := s.defaultNamespace(rmNS); ns != "" {
				if err := names.Check("namespace", ns); err != nil {
					return scope{}, err
				}
			}
		}
		// Which key, and so whether the caller may remove it, is the
		// backend's to find out; this gate only turns away those who may
		// remove no key at all, in the same words.
		return scope{target: keys.Target{Namespace: s.inv.Principal.Namespace}, denied: fmt.Sprintf("key %s not found", names.Quote(args[0]))}, nil
	}, func(cmd *cobra.Command, args []string) error {
		victim, err := s.env.Backend.RemoveKey(cmd.Context(), s.inv.Principal, args[0], s.defaultNamespace(rmNS))
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Key %s (%s) removed.\n", victim.Name, victim.Fingerprint)
		return nil
	})
	return g
}

func (s *session) keysAdd(g *cobra.Command) {
	add := &cobra.Command{
		Use:   "add --name NAME [--namespace NS | --app NS/APP | --admin] [--public KEY]",
		Short: "Add an SSH public key (from --public or stdin)",
		Long: "Add an SSH public key. The key text comes from --public, or from stdin when --public is not given.\n\n" +
			"  --namespace NS   a member of namespace NS: its apps and keys (default: your namespace)\n" +
			"  --app NS/APP     a deploy key: push and fetch that one app\n" +
			"  --admin          an operator key: everything (admins only)",
		Example: "  " + s.inv.Prog + " keys add --namespace test --name alice --public \"$(cat ~/.ssh/id_ed25519.pub)\"\n" +
			"  " + s.inv.Prog + " keys add --app test/web --name ci < deploy_key.pub",
	}
	var nsFlag, appFlag, name, public string
	var admin bool
	add.Flags().StringVar(&nsFlag, "namespace", "", "namespace the key belongs to")
	add.Flags().StringVar(&appFlag, "app", "", "make a deploy key of this app (NS/APP)")
	add.Flags().BoolVar(&admin, "admin", false, "make an operator key (admins only)")
	add.Flags().StringVar(&name, "name", "", "name of the key, e.g. laptop (required)")
	add.Flags().StringVar(&public, "public", "", "the public key text (default: read stdin)")
	var k backend.NewKey
	s.leaf(g, add, keys.KeysAdd, func(_ *cobra.Command, args []string) (scope, error) {
		k = backend.NewKey{Name: name}
		if err := names.Check("key", name); err != nil {
			if name == "" {
				return scope{}, errors.New("keys add needs --name NAME, e.g. --name laptop")
			}
			return scope{}, err
		}
		switch {
		case admin && (nsFlag != "" || appFlag != ""):
			return scope{}, errors.New("--admin keys belong to no namespace or app; drop --namespace/--app")
		case admin:
			k.Role = keys.RoleAdmin
			return scope{action: keys.KeysAddAdmin}, nil
		case appFlag != "":
			app, err := names.ParseApp(appFlag)
			if err != nil {
				return scope{}, err
			}
			if nsFlag != "" && nsFlag != app.Namespace {
				return scope{}, fmt.Errorf("--namespace %s does not match --app %s", names.Quote(nsFlag), app)
			}
			k.Role, k.Namespace, k.App = keys.RoleDeploy, app.Namespace, app.Name
			return scope{target: keys.Target{Namespace: app.Namespace}, denied: appNotFound(app)}, nil
		}
		k.Role, k.Namespace = keys.RoleNamespace, s.defaultNamespace(nsFlag)
		if k.Namespace == "" {
			return scope{}, errors.New("which namespace? add --namespace NS (or --app NS/APP, or --admin)")
		}
		return scope{target: keys.Target{Namespace: k.Namespace}, denied: namespaceNotFound(k.Namespace)}, names.Check("namespace", k.Namespace)
	}, func(cmd *cobra.Command, args []string) error {
		text, err := keyText(cmd, public, args)
		if err != nil {
			return err
		}
		k.Text = text
		added, err := s.env.Backend.AddKey(cmd.Context(), s.inv.Principal, k)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Key %s (%s) added %s.\n", added.Name, added.Fingerprint, backend.ScopeText(added))
		return nil
	})
}

// keyText is --public plus any further words (OpenSSH joins the client's
// argv, so an unquoted `--public ssh-rsa AAAA... me@host` arrives split),
// or stdin when neither is given.
func keyText(cmd *cobra.Command, public string, args []string) (string, error) {
	text := strings.TrimSpace(public + " " + strings.Join(args, " "))
	if text != "" {
		return text, nil
	}
	b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), keys.MaxKeyText+1))
	if err != nil {
		return "", fmt.Errorf("reading the key from stdin: %w", err)
	}
	return string(b), nil
}
