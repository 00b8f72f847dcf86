// Command upscale is the Upscale server (`upscale server`), the git hook
// client git runs (`upscale hook NAME`), and the local admin CLI on the
// server box (`upscale namespace create test`, ...), which is the same
// command tree users reach with `ssh upscale@host ...`.
package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/backend"
	"github.com/upscalehq/upscale/commands"
	"github.com/upscalehq/upscale/deploy"
	"github.com/upscalehq/upscale/fleet"
	"github.com/upscalehq/upscale/hooks"
	"github.com/upscalehq/upscale/hostagent"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/repos"
	"github.com/upscalehq/upscale/runtimes"
	"github.com/upscalehq/upscale/store"
	"github.com/upscalehq/upscale/store/sqlstore"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	// Git runs hooks on every push: keep that path free of everything else.
	if len(args) == 2 && args[0] == "hook" {
		return hooks.RunClient(args[1], os.Getenv, stdin, stderr)
	}
	// Help and the server itself run here; other commands on the server
	// when it runs.
	if len(args) > 0 && args[0] != "server" && args[0] != "help" && !slices.Contains(args, "--help") && !slices.Contains(args, "-h") {
		if code, ok := forward(args, stdin, stdout, stderr); ok {
			return code
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	opts := &options{Listen: ":2222"}
	env := &serverEnv{}
	var st store.Store
	prepare := func(cmd *cobra.Command, inv *commands.Invocation) error {
		if err := opts.load(cmd.Flags()); err != nil {
			return err
		}
		var err error
		st, err = openEnv(cmd.Context(), opts, env)
		inv.Remote = "ssh://upscale@" + net.JoinHostPort(hostname(), port(opts.Listen))
		return err
	}
	inv := commands.Invocation{Principal: keys.Local, Prog: "upscale", Stdin: stdin, Stdout: stdout, Stderr: stderr}
	tree := commands.New(&env.Env, inv, prepare)
	opts.register(tree.Root.PersistentFlags())
	tree.Root.AddCommand(serverCommand(opts, stderr))
	code := tree.Execute(ctx, args)
	if st != nil {
		st.Close()
	}
	return code
}

// serverEnv is what commands act on and what their backend is built over.
type serverEnv struct {
	commands.Env
	Store   store.Store
	Repos   *repos.Repos
	Catalog *runtimes.Catalog
}

// openEnv opens what commands act on, for the server and the local CLI
// alike, and returns the store for closing.
func openEnv(ctx context.Context, opts *options, env *serverEnv) (store.Store, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the upscale binary: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return nil, fmt.Errorf("finding the upscale binary: %w", err)
	}
	cat, err := runtimes.Load(opts.Runtimes)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	// Before the store opens: its file is made with the umask's mode.
	if err := os.Chmod(opts.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	st, err := sqlstore.Open(ctx, opts.DB, opts.Data)
	if err != nil {
		return nil, err
	}
	if err := privateEntries(opts.Data); err != nil {
		st.Close()
		return nil, err
	}
	rs := &repos.Repos{Root: filepath.Join(opts.Data, "repos"), Binary: exe}
	*env = serverEnv{
		Env: commands.Env{
			// The server's flags set its own quota; without a server (the CLI
			// on its own) the stock defaults hold. serve rebuilds it over the
			// deployer.
			Backend: backend.New(backend.Config{Store: st, Repos: rs, Domain: opts.Domain, Quota: deploy.DefaultQuota, Catalog: cat,
				// The local CLI has no bus: it describes this box.
				Hosts: func() []fleet.Host {
					return []fleet.Host{{Up: true, Beat: agentapi.Beat{Info: hostagent.Local(primaryAddress())}}}
				}}),
			Domain: opts.Domain,
			Log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		},
		Store:   st,
		Repos:   rs,
		Catalog: cat,
	}
	return st, nil
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	return h
}

func port(listen string) string {
	_, p, err := net.SplitHostPort(listen)
	if err != nil || p == "" {
		return "2222"
	}
	return p
}

// primaryAddress is the first non-loopback IPv4 address of this machine.
func primaryAddress() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if ip, ok := a.(*net.IPNet); ok && !ip.IP.IsLoopback() && ip.IP.To4() != nil {
			return ip.IP.String()
		}
	}
	return ""
}

// privateEntries takes group and other access off what dir holds (the
// store's file, the host key, the bus's secrets, the repositories): a data
// directory made by an older release, restored from a backup or widened
// by hand holds 0644 files. SQLite makes its -wal and -shm files with its
// database's mode, so they follow.
func privateEntries(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	for _, e := range entries {
		if e.Type()&^fs.ModeDir != 0 {
			continue // sockets, links: not ours to change
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
		if mode := info.Mode().Perm(); mode&0o077 != 0 {
			if err := os.Chmod(filepath.Join(dir, e.Name()), mode&^0o077); err != nil {
				return fmt.Errorf("data directory: %w", err)
			}
		}
	}
	return nil
}
