package commands

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/deploy"
	"github.com/upscalehq/upscale/dnsproof"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

type domainView struct {
	Hostname   string `json:"hostname"`
	App        string `json:"app"`
	Status     string `json:"status"` // pending or verified
	URL        string `json:"url"`
	CreatedAt  string `json:"created_at"`
	CheckedAt  string `json:"checked_at"`
	VerifiedAt string `json:"verified_at"`
	Failure    string `json:"failure"` // why the last check failed
	// The records either of which proves ownership of a pending domain.
	TXTName  string `json:"txt_name,omitempty"`
	TXTValue string `json:"txt_value,omitempty"`
	CNAME    string `json:"cname,omitempty"`
}

func status(d store.Domain) string {
	if d.Verified() {
		return "verified"
	}
	return "pending"
}

// domainsCommands are domains add, verify, remove and list: custom
// hostnames that route to an app besides APP.NS.DOMAIN once their owner
// proves control of them in DNS.
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
	// refused is the one line for a domain another app has verified:
	// another tenant's app names are not everyone's to know.
	refused := func(err error) error {
		var taken *deploy.DomainTakenError
		switch {
		case errors.As(err, &taken):
			if o := taken.Owner; o.Name != "" && (s.inv.Principal.Role == keys.RoleAdmin || o.Namespace == s.inv.Principal.Namespace) {
				return fmt.Errorf("domain %s is already in use by %s", hostname, o)
			}
			return fmt.Errorf("domain %s is already in use", hostname)
		case errors.Is(err, store.ErrNotFound):
			return errors.New(appNotFound(app))
		}
		return err
	}

	add := &cobra.Command{
		Use:   "add NS/APP HOSTNAME",
		Short: "Claim a hostname for an app; it routes once DNS proves it is yours",
		Example: "  " + s.inv.Prog + " domains add acme/web www.example.com\n" +
			"  then in DNS, either: _upscale-challenge.www.example.com TXT \"<token it prints>\"\n" +
			"                   or: www.example.com CNAME web.acme." + s.env.Domain,
		Args: argsN(2, "NS/APP HOSTNAME"),
	}
	s.leaf(g, add, keys.DomainsManage, withHost, func(cmd *cobra.Command, _ []string) error {
		if err := s.needApps(cmd, app); err != nil {
			return err
		}
		dom, added, err := s.env.Apps.AddDomain(cmd.Context(), app, hostname, s.inv.Principal.Name)
		if err != nil && dom.Hostname == "" {
			return refused(err)
		}
		w := cmd.OutOrStdout()
		switch {
		case dom.Verified() && !added:
			fmt.Fprintf(w, "Domain %s already routes to %s.\n", hostname, app)
		case dom.Verified():
			fmt.Fprintf(w, "Domain %s verified and routed to %s: %s\n", hostname, app, s.domainURL(hostname))
		case added:
			fmt.Fprintf(w, "Domain %s added to %s, pending proof that you control it: it is not routed yet.\n", hostname, app)
			s.proofHint(w, app, dom)
		default:
			fmt.Fprintf(w, "Domain %s is already added to %s, pending proof that you control it.\n", hostname, app)
			s.proofHint(w, app, dom)
		}
		return refused(err)
	})

	verify := &cobra.Command{
		Use:   "verify NS/APP HOSTNAME",
		Short: "Check a pending domain's DNS proof now; routed once it is found",
		Args:  argsN(2, "NS/APP HOSTNAME"),
	}
	s.leaf(g, verify, keys.DomainsManage, withHost, func(cmd *cobra.Command, _ []string) error {
		if err := s.needApps(cmd, app); err != nil {
			return err
		}
		was, err := s.env.Apps.VerifyDomain(cmd.Context(), app, hostname, s.inv.Principal.Name)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("app %s has no domain %s", app, hostname)
		}
		if err != nil && was.Hostname == "" {
			return refused(err)
		}
		if err == nil && !was.Verified() {
			return fmt.Errorf("domain %s is not verified yet: %s", hostname, was.Failure)
		}
		if err == nil {
			fmt.Fprintf(cmd.OutOrStdout(), "Domain %s is verified and routes to %s: %s\n", hostname, app, s.domainURL(hostname))
		}
		return refused(err)
	})

	remove := &cobra.Command{Use: "remove NS/APP HOSTNAME", Aliases: []string{"rm"}, Short: "Stop routing a hostname to an app, or drop its pending claim", Args: argsN(2, "NS/APP HOSTNAME")}
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

	list := &cobra.Command{Use: "list NS/APP", Short: "List an app's custom domains, verified or pending", Args: argsN(1, "NS/APP")}
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
			v := domainView{Hostname: d.Hostname, App: app.String(), Status: status(d), URL: s.domainURL(d.Hostname),
				CreatedAt: when(d.CreatedAt), CheckedAt: when(d.CheckedAt), VerifiedAt: when(d.VerifiedAt), Failure: d.Failure}
			if !d.Verified() {
				v.TXTName, v.TXTValue, v.CNAME = dnsproof.ChallengePrefix+d.Hostname, d.Token, s.platformHost(app)
			}
			views = append(views, v)
		}
		return output(cmd, *format, views, func(w io.Writer) {
			if len(views) == 0 {
				fmt.Fprintf(w, "%s has no custom domains; it answers at %s\n", app, s.url(app))
				return
			}
			row(w, "DOMAIN", "STATUS", "URL", "ADDED", "CHECKED", "LAST FAILURE")
			for _, v := range views {
				row(w, v.Hostname, v.Status, v.URL, v.CreatedAt, v.CheckedAt, dash(v.Failure))
			}
			for _, v := range views {
				if v.Status == "pending" {
					fmt.Fprintf(w, "Prove %s: TXT %s %q, or CNAME to %s\n", v.Hostname, v.TXTName, v.TXTValue, v.CNAME)
				}
			}
		})
	})
	return g
}

// proofHint tells the owner of a pending domain how to prove it, and what
// the last check found.
func (s *session) proofHint(w io.Writer, app names.App, d store.Domain) {
	fmt.Fprintf(w, "Prove it with either DNS record:\n")
	fmt.Fprintf(w, "  %s  TXT    %q\n", dnsproof.ChallengePrefix+d.Hostname, d.Token)
	fmt.Fprintf(w, "  %s  CNAME  %s\n", d.Hostname, s.platformHost(app))
	fmt.Fprintf(w, "then: %s domains verify %s %s (checked by itself every %s for %s, then every %s)\n",
		s.inv.Prog, app, d.Hostname, spoken(deploy.DomainRetryFast), spoken(deploy.DomainFastPeriod), spoken(deploy.DomainRetrySlow))
	if d.Failure != "" {
		fmt.Fprintf(w, "Last check: %s\n", d.Failure)
	}
}

// spoken is a duration as people write it: "30 s", "10 minutes".
func spoken(d time.Duration) string {
	if d >= time.Minute && d%time.Minute == 0 {
		return fmt.Sprintf("%d minutes", d/time.Minute)
	}
	return fmt.Sprintf("%d s", d/time.Second)
}

func (s *session) platformHost(app names.App) string {
	return deploy.Hostname(app.Namespace, app.Name, s.env.Domain)
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
