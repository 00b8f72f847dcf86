package commands

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/backend"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
)

type pushView struct {
	Ref     string `json:"ref"`
	Commit  string `json:"commit"`
	Subject string `json:"subject"`
	By      string `json:"by"`
	At      string `json:"at"`
}

type appView struct {
	Namespace    string    `json:"namespace"`
	Name         string    `json:"name"`
	URL          string    `json:"url"`
	GitRemote    string    `json:"git_remote"`
	DeployBranch string    `json:"deploy_branch"`
	CreatedAt    string    `json:"created_at"`
	LastPush     *pushView `json:"last_push,omitempty"`
	Release      string    `json:"release"`   // the live one, "vN", or ""
	Instances    int       `json:"instances"` // running now
	Stopped      bool      `json:"stopped"`
	// State is "running", "stopped" (app stop) or "not deployed".
	State string `json:"state"`
	// HTTPS is the certificate of the app's hostname (app info only).
	HTTPS *certView `json:"https,omitempty"`
	// The HTTPS policy (app info only).
	HTTPSRedirect bool  `json:"https_redirect"`
	HSTSMaxAge    int64 `json:"hsts_max_age"`
}

func (s *session) view(a backend.App) appView {
	v := appView{
		Namespace:    a.Namespace,
		Name:         a.Name,
		URL:          a.URL,
		GitRemote:    fmt.Sprintf("%s/%s/%s.git", s.inv.Remote, a.Namespace, a.Name),
		DeployBranch: a.DeployBranch,
		CreatedAt:    when(a.CreatedAt),
		Stopped:      a.Stopped,
		Instances:    a.Instances,
		State:        "running",
	}
	switch {
	case a.Stopped:
		v.State = "stopped"
	case a.LiveVersion == 0:
		v.State = "not deployed"
	}
	if a.LiveVersion != 0 {
		v.Release = fmt.Sprintf("v%d", a.LiveVersion)
	}
	return v
}

func (s *session) appCommands() *cobra.Command {
	g := s.group("app", "Create, list, inspect, run and delete applications", "apps")
	s.appCreate(g)
	s.lifecycleCommands(g)
	s.appList(g)
	s.appExec(g)

	info := &cobra.Command{Use: "info NS/APP", Short: "Show an application", Args: argsN(1, "NS/APP")}
	format := formatFlag(info)
	var app names.App
	appScope := func(_ *cobra.Command, args []string) (sc scope, err error) {
		app, sc, err = appArg(args)
		return sc, err
	}
	s.leaf(g, info, keys.AppInfo, func(cmd *cobra.Command, args []string) (scope, error) {
		if err := checkFormat(*format); err != nil {
			return scope{}, err
		}
		return appScope(cmd, args)
	}, func(cmd *cobra.Command, _ []string) error {
		info, err := s.env.Backend.AppInfo(cmd.Context(), s.inv.Principal, app)
		if err != nil {
			return err
		}
		v := s.view(info.App)
		live := "none yet"
		if rel := info.Live; rel != nil {
			live = fmt.Sprintf("v%d: %s %q by %s, %s", rel.Version, msgtext.Short(rel.Commit), rel.Subject, rel.By, when(rel.CreatedAt))
		}
		v.HTTPS = certOf(info.HTTPS)
		v.HTTPSRedirect, v.HSTSMaxAge = !info.NoHTTPSRedirect, info.HSTSMaxAge
		if p := info.LastPush; p != nil {
			v.LastPush = &pushView{Ref: p.Ref, Commit: p.NewCommit, Subject: p.Subject, By: p.KeyName, At: when(p.At)}
		}
		return output(cmd, *format, v, func(w io.Writer) {
			row(w, "App:", app.String())
			row(w, "URL:", v.URL)
			row(w, "Git remote:", v.GitRemote)
			row(w, "Deploy branch:", v.DeployBranch)
			row(w, "HTTPS:", v.HTTPS.summary())
			policy := "redirect HTTP to HTTPS"
			if !v.HTTPSRedirect {
				policy = "no redirect"
			}
			if v.HSTSMaxAge > 0 {
				policy += fmt.Sprintf(", HSTS max-age=%d", v.HSTSMaxAge)
			}
			row(w, "HTTPS policy:", policy)
			row(w, "Created:", v.CreatedAt)
			if p := v.LastPush; p != nil {
				row(w, "Last push:", fmt.Sprintf("%s %q by %s at %s", msgtext.Short(p.Commit), p.Subject, p.By, p.At))
			} else {
				row(w, "Last push:", "none yet")
			}
			row(w, "Live release:", live)
			state := fmt.Sprintf("%d instance(s) running", v.Instances)
			if v.Stopped {
				state = "stopped (app run starts it)"
			}
			row(w, "State:", state)
		})
	})

	del := &cobra.Command{Use: "delete NS/APP", Short: "Delete an application and its repository", Args: argsN(1, "NS/APP")}
	s.leaf(g, del, keys.AppDelete, appScope, func(cmd *cobra.Command, _ []string) error {
		if err := s.env.Backend.DeleteApp(cmd.Context(), s.inv.Principal, app); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Application %s deleted.\n", app)
		return nil
	})

	set := &cobra.Command{
		Use:   "set NS/APP SETTING VALUE",
		Short: "Change a setting: deploy-branch, https-redirect, hsts",
		Long: "Change an application setting.\n\nSettings:\n" +
			"  deploy-branch BRANCH     the branch whose pushes deploy (default master)\n" +
			"  https-redirect on|off    answer plain HTTP with a 301 to HTTPS once a certificate is live (default on)\n" +
			"  hsts max-age=SECONDS|off send Strict-Transport-Security over HTTPS (default off; at most two years)",
		Example: "  " + s.inv.Prog + " app set test/test deploy-branch main\n" +
			"  " + s.inv.Prog + " app set test/test deploy-branch=main\n" +
			"  " + s.inv.Prog + " app set test/test https-redirect off\n" +
			"  " + s.inv.Prog + " app set test/test hsts max-age=31536000",
		Args: cobra.RangeArgs(2, 3),
	}
	var setting, value string
	var redirect bool
	var hsts time.Duration
	s.leaf(g, set, keys.AppSet, func(cmd *cobra.Command, args []string) (scope, error) {
		setting, value = args[1], ""
		if len(args) == 3 {
			value = args[2]
		} else if k, v, ok := strings.Cut(args[1], "="); ok {
			setting, value = k, v
		} else {
			return scope{}, usagef("app set needs SETTING VALUE, e.g. deploy-branch main")
		}
		var err error
		switch setting {
		case "deploy-branch":
			err = backend.CheckBranch(value)
		case "https-redirect":
			redirect, err = backend.ParseOnOff(setting, value)
		case "hsts":
			hsts, err = backend.ParseHSTS(value)
		default:
			err = fmt.Errorf("unknown setting %s; known: deploy-branch, https-redirect, hsts", names.Quote(setting))
		}
		if err != nil {
			return scope{}, err
		}
		return appScope(cmd, args)
	}, func(cmd *cobra.Command, _ []string) error {
		ctx, w := cmd.Context(), cmd.OutOrStdout()
		switch setting {
		case "https-redirect":
			if err := s.env.Backend.SetHTTPSRedirect(ctx, s.inv.Principal, app, redirect); err != nil {
				return err
			}
			if redirect {
				fmt.Fprintf(w, "HTTP requests to %s now get a 301 to HTTPS once its certificate is live.\n", app)
			} else {
				fmt.Fprintf(w, "HTTP requests to %s are now answered over HTTP, without a redirect.\n", app)
			}
		case "hsts":
			if err := s.env.Backend.SetHSTS(ctx, s.inv.Principal, app, hsts); err != nil {
				return err
			}
			if hsts == 0 {
				fmt.Fprintf(w, "HSTS is off for %s.\n", app)
			} else {
				fmt.Fprintf(w, "HTTPS answers of %s now carry Strict-Transport-Security: max-age=%d.\n", app, int64(hsts/time.Second))
			}
		default:
			if err := s.env.Backend.SetDeployBranch(ctx, s.inv.Principal, app, value); err != nil {
				return err
			}
			fmt.Fprintf(w, "Deploy branch of %s is now %s.\n", app, value)
		}
		return nil
	})
	return g
}

func (s *session) appCreate(g *cobra.Command) {
	var nsFlag, appFlag string
	create := &cobra.Command{
		Use:   "create NS/APP",
		Short: "Create an application with its git repository",
		Example: "  " + s.inv.Prog + " app create test/test\n" +
			"  " + s.inv.Prog + " app create --namespace test --application test\n" +
			"  " + s.inv.Prog + " app create test        (with a namespace key: in its namespace)",
		Args: maxArgs(1, "one NS/APP"),
	}
	create.Flags().StringVar(&nsFlag, "namespace", "", "namespace of the new app")
	create.Flags().StringVar(&appFlag, "application", "", "name of the new app")
	var app names.App
	s.leaf(g, create, keys.AppCreate, func(_ *cobra.Command, args []string) (scope, error) {
		var err error
		app, err = s.resolveNewApp(nsFlag, appFlag, args)
		return scope{target: keys.Target{Namespace: app.Namespace, App: app.Name}, denied: namespaceNotFound(app.Namespace)}, err
	}, func(cmd *cobra.Command, _ []string) error {
		a, err := s.env.Backend.CreateApp(cmd.Context(), s.inv.Principal, app)
		if err != nil {
			return s.quotaError(err)
		}
		v := s.view(a)
		fmt.Fprintf(cmd.OutOrStdout(), "Application %s created.\n\n  git remote add upscale %s\n  git push upscale %s\n\nIt will answer at %s\n",
			app, v.GitRemote, a.DeployBranch, v.URL)
		return nil
	})
}

// resolveNewApp accepts NS/APP, APP (the caller's own namespace, or
// --namespace) or --namespace NS --application APP.
func (s *session) resolveNewApp(nsFlag, appFlag string, args []string) (names.App, error) {
	var ns, name string
	if len(args) == 1 {
		if a, b, ok := strings.Cut(args[0], "/"); ok {
			ns, name = a, b
		} else {
			name = args[0]
		}
	}
	for _, f := range []struct{ kind, flag, arg string }{
		{"namespace", nsFlag, ns},
		{"application", appFlag, name},
	} {
		if f.flag != "" && f.arg != "" && f.flag != f.arg {
			return names.App{}, fmt.Errorf("%s given twice: %s and --%s %s", f.kind, names.Quote(f.arg), f.kind, names.Quote(f.flag))
		}
	}
	if ns == "" {
		ns = s.defaultNamespace(nsFlag)
	}
	if name == "" {
		name = appFlag
	}
	if ns == "" {
		return names.App{}, errors.New("which namespace? give NS/APP or --namespace NS")
	}
	if name == "" {
		return names.App{}, errors.New("which application? give NS/APP or --application APP")
	}
	app := names.App{Namespace: ns, Name: name}
	if err := names.Check("namespace", ns); err != nil {
		return app, err
	}
	return app, names.Check("application", name)
}

func (s *session) appList(g *cobra.Command) {
	list := &cobra.Command{Use: "list", Short: "List applications", Args: noArgs}
	var nsFlag string
	list.Flags().StringVar(&nsFlag, "namespace", "", "only this namespace (default: yours, or all for admins)")
	format := formatFlag(list)
	var ns string
	s.leaf(g, list, keys.AppList, func(*cobra.Command, []string) (scope, error) {
		if err := checkFormat(*format); err != nil {
			return scope{}, err
		}
		ns = s.defaultNamespace(nsFlag)
		if ns != "" {
			if err := names.Check("namespace", ns); err != nil {
				return scope{}, err
			}
			return scope{target: keys.Target{Namespace: ns}, denied: namespaceNotFound(ns)}, nil
		}
		return scope{}, nil
	}, func(cmd *cobra.Command, _ []string) error {
		apps, err := s.env.Backend.ListApps(cmd.Context(), s.inv.Principal, ns)
		if err != nil {
			return err
		}
		views := make([]appView, 0, len(apps))
		for _, a := range apps {
			views = append(views, s.view(a))
		}
		return output(cmd, *format, views, func(w io.Writer) {
			row(w, "APP", "STATE", "RELEASE", "INSTANCES", "DEPLOY BRANCH", "URL", "CREATED")
			for _, v := range views {
				row(w, v.Namespace+"/"+v.Name, v.State, dash(v.Release), fmt.Sprint(v.Instances), v.DeployBranch, v.URL, v.CreatedAt)
			}
		})
	})
}
