package commands

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/backend"
	"github.com/upscalehq/upscale/dnsproof"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
)

type domainView struct {
	Hostname   string    `json:"hostname"`
	App        string    `json:"app"`
	Status     string    `json:"status"` // pending or verified
	URL        string    `json:"url"`
	CreatedAt  string    `json:"created_at"`
	CheckedAt  string    `json:"checked_at"`
	VerifiedAt string    `json:"verified_at"`
	Failure    string    `json:"failure"`         // why the last check failed
	HTTPS      *certView `json:"https,omitempty"` // verified domains only
	// The records either of which proves ownership of a pending domain.
	TXTName  string `json:"txt_name,omitempty"`
	TXTValue string `json:"txt_value,omitempty"`
	CNAME    string `json:"cname,omitempty"`
}

func status(d backend.Domain) string {
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
		hostname, err = backend.NormalizeHostname(args[1], s.env.Domain)
		return sc, err
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
		dom, added, err := s.env.Backend.AddDomain(cmd.Context(), s.inv.Principal, app, hostname)
		if err != nil && dom.Hostname == "" {
			return s.overSSH(cmd, app, err)
		}
		w := cmd.OutOrStdout()
		switch {
		case dom.Verified() && !added:
			fmt.Fprintf(w, "Domain %s already routes to %s.\n", hostname, app)
		case dom.Verified():
			fmt.Fprintf(w, "Domain %s verified and routed to %s: %s\n", hostname, app, dom.URL)
		case added:
			fmt.Fprintf(w, "Domain %s added to %s, pending proof that you control it: it is not routed yet.\n", hostname, app)
			s.proofHint(w, app, dom)
		default:
			fmt.Fprintf(w, "Domain %s is already added to %s, pending proof that you control it.\n", hostname, app)
			s.proofHint(w, app, dom)
		}
		return err
	})

	verify := &cobra.Command{
		Use:   "verify NS/APP HOSTNAME",
		Short: "Check a pending domain's DNS proof now; routed once it is found",
		Args:  argsN(2, "NS/APP HOSTNAME"),
	}
	s.leaf(g, verify, keys.DomainsManage, withHost, func(cmd *cobra.Command, _ []string) error {
		was, err := s.env.Backend.VerifyDomain(cmd.Context(), s.inv.Principal, app, hostname)
		if err != nil {
			return s.overSSH(cmd, app, err)
		}
		if !was.Verified() {
			return fmt.Errorf("domain %s is not verified yet: %s", hostname, was.Failure)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Domain %s is verified and routes to %s: %s\n", hostname, app, was.URL)
		return nil
	})

	remove := &cobra.Command{Use: "remove NS/APP HOSTNAME", Aliases: []string{"rm"}, Short: "Stop routing a hostname to an app, or drop its pending claim", Args: argsN(2, "NS/APP HOSTNAME")}
	s.leaf(g, remove, keys.DomainsManage, withHost, func(cmd *cobra.Command, _ []string) error {
		if err := s.env.Backend.RemoveDomain(cmd.Context(), s.inv.Principal, app, hostname); err != nil {
			return s.overSSH(cmd, app, err)
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
		list, err := s.env.Backend.Domains(cmd.Context(), s.inv.Principal, app)
		if err != nil {
			return err
		}
		views := make([]domainView, 0, len(list.Domains))
		for _, d := range list.Domains {
			v := domainView{Hostname: d.Hostname, App: app.String(), Status: status(d.Domain), URL: d.URL,
				CreatedAt: when(d.CreatedAt), CheckedAt: when(d.CheckedAt), VerifiedAt: when(d.VerifiedAt), Failure: d.Failure,
				HTTPS: certOf(d.HTTPS)}
			if !d.Verified() {
				v.TXTName, v.TXTValue, v.CNAME = dnsproof.ChallengePrefix+d.Hostname, d.Token, d.Target
			}
			views = append(views, v)
		}
		return output(cmd, *format, views, func(w io.Writer) {
			if len(views) == 0 {
				fmt.Fprintf(w, "%s has no custom domains; it answers at %s\n", app, list.AppURL)
				return
			}
			row(w, "DOMAIN", "STATUS", "URL", "ADDED", "CHECKED", "LAST FAILURE", "HTTPS")
			for _, v := range views {
				https := "-"
				if v.Status == "verified" {
					https = v.HTTPS.summary()
				}
				row(w, v.Hostname, v.Status, v.URL, v.CreatedAt, v.CheckedAt, dash(v.Failure), https)
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
func (s *session) proofHint(w io.Writer, app names.App, d backend.DomainClaim) {
	fmt.Fprintf(w, "Prove it with either DNS record:\n")
	fmt.Fprintf(w, "  %s  TXT    %q\n", dnsproof.ChallengePrefix+d.Hostname, d.Token)
	fmt.Fprintf(w, "  %s  CNAME  %s\n", d.Hostname, d.Target)
	fmt.Fprintf(w, "then: %s domains verify %s %s (checked by itself every %s for %s, then every %s)\n",
		s.inv.Prog, app, d.Hostname, spoken(backend.DomainRetryFast), spoken(backend.DomainFastPeriod), spoken(backend.DomainRetrySlow))
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
