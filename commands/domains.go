package commands

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/deploy"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

type domainView struct {
	Hostname  string `json:"hostname"`
	App       string `json:"app"`
	URL       string `json:"url"`
	CreatedAt string `json:"created_at"`
}

// domainsCommands are domains add, remove and list: custom hostnames that
// route to an app besides APP.NS.DOMAIN.
func (s *session) domainsCommands() *cobra.Command {
	g := s.group("domains", "Route custom hostnames (www.example.com) to an app", "domain")
	var app names.App
	var hostname string
	// withHost resolves NS/APP HOSTNAME; a malformed hostname is refused
	// before anything else, which tells nobody anything.
	withHost := func(_ *cobra.Command, args []string) (sc scope, err error) {
		app, sc, err = appArg(args)
		if err != nil {
			return sc, err
		}
		hostname, err = deploy.NormalizeHostname(args[1], s.env.Domain)
		return sc, err
	}

	add := &cobra.Command{
		Use:   "add NS/APP HOSTNAME",
		Short: "Route a hostname to an app (point its DNS at Upscale's router)",
		Example: "  " + s.inv.Prog + " domains add acme/web www.example.com\n" +
			"  then in DNS: www.example.com CNAME (or A) to this platform's router",
		Args: argsN(2, "NS/APP HOSTNAME"),
	}
	s.leaf(g, add, keys.DomainsManage, withHost, func(cmd *cobra.Command, _ []string) error {
		if err := s.needApps(cmd, app); err != nil {
			return err
		}
		added, err := s.env.Apps.AddDomain(cmd.Context(), app, hostname, s.inv.Principal.Name)
		var taken *deploy.DomainTakenError
		switch {
		case errors.As(err, &taken):
			// Another tenant's app names are not everyone's to know.
			if o := taken.Owner; o.Name != "" && (s.inv.Principal.Role == keys.RoleAdmin || o.Namespace == s.inv.Principal.Namespace) {
				return fmt.Errorf("domain %s is already in use by %s", hostname, o)
			}
			return fmt.Errorf("domain %s is already in use", hostname)
		case errors.Is(err, store.ErrNotFound):
			return errors.New(appNotFound(app))
		case err != nil:
			return err
		}
		if !added {
			fmt.Fprintf(cmd.OutOrStdout(), "Domain %s already routes to %s.\n", hostname, app)
			return nil
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Domain %s now routes to %s: %s\nPoint its DNS at this platform's router (CNAME to %s, or its address).\n",
			hostname, app, s.domainURL(hostname), deploy.Hostname(app.Namespace, app.Name, s.env.Domain))
		return nil
	})

	remove := &cobra.Command{Use: "remove NS/APP HOSTNAME", Aliases: []string{"rm"}, Short: "Stop routing a hostname to an app", Args: argsN(2, "NS/APP HOSTNAME")}
	s.leaf(g, remove, keys.DomainsManage, withHost, func(cmd *cobra.Command, _ []string) error {
		if err := s.needApps(cmd, app); err != nil {
			return err
		}
		err := s.env.Apps.RemoveDomain(cmd.Context(), app, hostname, s.inv.Principal.Name)
		if errors.Is(err, store.ErrNotFound) {
			if _, aerr := s.env.Store.GetApp(cmd.Context(), app.Namespace, app.Name); errors.Is(aerr, store.ErrNotFound) {
				return errors.New(appNotFound(app))
			}
			return fmt.Errorf("app %s has no domain %s", app, hostname)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Domain %s removed from %s.\n", hostname, app)
		return nil
	})

	list := &cobra.Command{Use: "list NS/APP", Short: "List an app's custom domains", Args: argsN(1, "NS/APP")}
	format := formatFlag(list)
	s.leaf(g, list, keys.DomainsList, func(_ *cobra.Command, args []string) (sc scope, err error) {
		if err := checkFormat(*format); err != nil {
			return scope{}, err
		}
		app, sc, err = appArg(args)
		return sc, err
	}, func(cmd *cobra.Command, _ []string) error {
		domains, err := s.env.Store.ListDomains(cmd.Context(), app.Namespace, app.Name)
		if errors.Is(err, store.ErrNotFound) {
			return errors.New(appNotFound(app))
		}
		if err != nil {
			return err
		}
		views := make([]domainView, 0, len(domains))
		for _, d := range domains {
			views = append(views, domainView{Hostname: d.Hostname, App: app.String(), URL: s.domainURL(d.Hostname), CreatedAt: when(d.CreatedAt)})
		}
		return output(cmd, *format, views, func(w io.Writer) {
			if len(views) == 0 {
				fmt.Fprintf(w, "%s has no custom domains; it answers at %s\n", app, s.url(app))
				return
			}
			row(w, "DOMAIN", "URL", "ADDED")
			for _, v := range views {
				row(w, v.Hostname, v.URL, v.CreatedAt)
			}
		})
	})
	return g
}

// domainURL is where a custom domain answers: the router's public port
// is the one in app URLs.
func (s *session) domainURL(hostname string) string {
	u, err := url.Parse(s.url(names.App{Namespace: "ns", Name: "app"}))
	if err != nil || u.Port() == "" {
		return "http://" + hostname
	}
	return "http://" + net.JoinHostPort(hostname, u.Port())
}
