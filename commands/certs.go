package commands

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/backend"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
)

// certView is the certificate serving a hostname, as the engine says.
type certView struct {
	Name      string `json:"name"`   // what it is managed under: the host, or *.NS.DOMAIN
	Issuer    string `json:"issuer"` // acme, internal, manual
	Status    string `json:"status"` // pending, live, failed, held-back
	Expires   string `json:"expires"`
	LastError string `json:"last_error"`
	NextTry   string `json:"next_try"`
}

func certOf(st *backend.CertStatus) *certView {
	if st == nil {
		return nil
	}
	return &certView{Name: st.Name, Issuer: st.Issuer, Status: string(st.State), Expires: when(st.NotAfter),
		LastError: st.LastError, NextTry: when(st.NextTry)}
}

// summary is the one line app info and domains list show.
func (v *certView) summary() string {
	switch {
	case v == nil:
		return "none (HTTPS off, or not asked for yet)"
	case v.Status == "live" && v.LastError != "":
		return fmt.Sprintf("live (%s, expires %s); renewal failed: %s", v.Issuer, v.Expires, v.LastError)
	case v.Status == "live":
		return fmt.Sprintf("live (%s, expires %s)", v.Issuer, v.Expires)
	case v.LastError != "":
		return fmt.Sprintf("%s: %s (next try %s)", v.Status, v.LastError, v.NextTry)
	}
	return v.Status
}

type hostCertView struct {
	App  string `json:"app"`
	Host string `json:"host"`
	certView
}

// maxBundle bounds a certificate and key read from stdin or files: far
// over any real chain (the engine takes 256 KiB).
const maxBundle = 512 << 10

// certsCommands are certs list, add, remove and renew.
func (s *session) certsCommands() *cobra.Command {
	g := s.group("certs", "HTTPS certificates of apps: status, bring your own, renew", "cert", "certificates")
	var app names.App
	var host string
	appHost := func(_ *cobra.Command, args []string) (sc scope, err error) {
		app, sc, err = appArg(args)
		if err != nil || len(args) < 2 {
			host = ""
			return sc, err
		}
		host, err = certHost(args[1], s.env.Domain)
		return sc, err
	}

	list := &cobra.Command{
		Use:   "list [NS/APP]",
		Short: "Show the certificate of each of an app's hostnames (every app's, for an admin)",
		Args:  maxArgs(1, "one NS/APP"),
	}
	format := formatFlag(list)
	s.leaf(g, list, keys.CertsList, func(cmd *cobra.Command, args []string) (scope, error) {
		if err := checkFormat(*format); err != nil {
			return scope{}, err
		}
		if len(args) == 0 {
			app = names.App{}
			return scope{}, nil
		}
		return appHost(cmd, args)
	}, func(cmd *cobra.Command, _ []string) error {
		certs, err := s.env.Backend.Certificates(cmd.Context(), s.inv.Principal, app)
		if err != nil {
			return err
		}
		views := make([]hostCertView, 0, len(certs))
		for _, c := range certs {
			v := hostCertView{App: c.App.String(), Host: c.Host}
			if cv := certOf(c.Status); cv != nil {
				v.certView = *cv
			} else {
				v.Status = "none"
			}
			views = append(views, v)
		}
		return output(cmd, *format, views, func(w io.Writer) {
			row(w, "APP", "HOST", "CERTIFICATE", "ISSUER", "EXPIRES", "STATUS", "LAST ERROR")
			for _, v := range views {
				row(w, v.App, v.Host, dash(v.Name), dash(v.Issuer), dash(v.Expires), v.Status, dash(v.LastError))
			}
		})
	})

	add := &cobra.Command{
		Use:   "add NS/APP HOSTNAME",
		Short: "Serve your own certificate for one of an app's hostnames",
		Long: "Serve your own certificate for one of an app's hostnames (its own, or a verified custom domain).\n" +
			"Give the chain (leaf first) and its unencrypted private key: on stdin, or locally as --cert and --key files.\n" +
			"It wins over any issuer until certs remove; it is not renewed.",
		Example: "  cat fullchain.pem privkey.pem | " + s.inv.Prog + " certs add acme/web www.example.com\n" +
			"  upscale certs add acme/web www.example.com --cert fullchain.pem --key privkey.pem   (on the server)",
		Args: argsN(2, "NS/APP HOSTNAME"),
	}
	var certFile, keyFile string
	add.Flags().StringVar(&certFile, "cert", "", "PEM file of the chain, leaf first (local only; over ssh, stdin)")
	add.Flags().StringVar(&keyFile, "key", "", "PEM file of the private key (local only; over ssh, stdin)")
	s.leaf(g, add, keys.CertsManage, func(cmd *cobra.Command, args []string) (scope, error) {
		if (certFile == "") != (keyFile == "") {
			return scope{}, errors.New("give both --cert and --key, or neither and both on stdin")
		}
		if certFile != "" && s.inv.Principal.Fingerprint != "" {
			return scope{}, errors.New("over ssh, pass the certificate and key on stdin: cat CERT KEY | ssh upscale@HOST certs add NS/APP HOSTNAME")
		}
		return appHost(cmd, args)
	}, func(cmd *cobra.Command, _ []string) error {
		pem, err := s.bundle(cmd, certFile, keyFile)
		if err != nil {
			return err
		}
		notAfter, err := s.env.Backend.AddCert(cmd.Context(), s.inv.Principal, app, host, pem)
		if err != nil {
			return s.overSSH(cmd, app, err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Certificate for %s added to %s (expires %s); it is served now.\n", host, app, when(notAfter))
		return nil
	})

	remove := &cobra.Command{Use: "remove NS/APP HOSTNAME", Aliases: []string{"rm"},
		Short: "Stop serving a certificate you added; the hostname's issuer takes over", Args: argsN(2, "NS/APP HOSTNAME")}
	s.leaf(g, remove, keys.CertsManage, appHost, func(cmd *cobra.Command, _ []string) error {
		if err := s.env.Backend.RemoveCert(cmd.Context(), s.inv.Principal, app, host); err != nil {
			return s.overSSH(cmd, app, err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Certificate added for %s removed; a new one is being obtained.\n", host)
		return nil
	})

	renew := &cobra.Command{Use: "renew NS/APP [HOSTNAME]", Short: "Renew an app's certificates now, due or not",
		Args: cobra.RangeArgs(1, 2)}
	s.leaf(g, renew, keys.CertsManage, appHost, func(cmd *cobra.Command, _ []string) error {
		done, err := s.env.Backend.RenewCerts(cmd.Context(), s.inv.Principal, app, host)
		if err != nil {
			return s.overSSH(cmd, app, err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Renewing %s; certs list %s shows when it is done.\n", strings.Join(done, ", "), app)
		return nil
	})
	return g
}

// certHost is a hostname as certs commands take it: an app's own name
// under the platform domain, or a custom domain.
func certHost(h, platform string) (string, error) {
	l := strings.TrimSuffix(strings.ToLower(h), ".")
	if own, ok := strings.CutSuffix(l, "."+platform); ok && strings.Count(own, ".") == 1 {
		ns, app, _ := strings.Cut(own, ".")
		if names.Check("application", app) == nil && names.Check("namespace", ns) == nil {
			return l, nil
		}
	}
	return backend.NormalizeHostname(h, platform)
}

// bundle reads the chain and key: from the local files, or from stdin.
func (s *session) bundle(cmd *cobra.Command, certFile, keyFile string) ([]byte, error) {
	if certFile != "" {
		var out []byte
		for _, f := range []struct{ flag, path string }{{"--cert", certFile}, {"--key", keyFile}} {
			b, err := os.ReadFile(f.path)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", f.flag, errors.Unwrap(err))
			}
			if len(out)+len(b) > maxBundle {
				return nil, fmt.Errorf("%s %s: over %d KiB; it is not a certificate or key", f.flag, f.path, maxBundle>>10)
			}
			out = append(append(out, b...), '\n')
		}
		return out, nil
	}
	if s.inv.Stdin == nil {
		return nil, errors.New("no certificate: give it on stdin (cat CERT KEY | ...), or --cert and --key locally")
	}
	b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), maxBundle+1))
	switch {
	case err != nil:
		return nil, err
	case len(b) == 0:
		return nil, errors.New("no certificate: give the chain and key on stdin (cat CERT KEY | ...), or --cert and --key locally")
	case len(b) > maxBundle:
		return nil, fmt.Errorf("stdin is over %d KiB; it is not a certificate and key", maxBundle>>10)
	}
	return b, nil
}
