package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/commands"
	"github.com/upscalehq/upscale/gitd"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// shutdownGrace is how long running pushes and commands may finish after
// SIGTERM.
const shutdownGrace = 30 * time.Second

func serverCommand(opts *options, stderr io.Writer) *cobra.Command {
	c := &cobra.Command{
		Use:   "server",
		Short: "Run the Upscale server: SSH for git and commands",
		Args:  cobra.NoArgs,
		// The server is started by the operator on the box; it is not one
		// of the gated commands, so it skips the root's gate.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return opts.load(cmd.Flags()) },
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), opts, slog.New(slog.NewTextHandler(stderr, nil)))
		},
	}
	c.Flags().StringVar(&opts.Listen, "listen", ":2222", "SSH listen address (git and commands)")
	return c
}

func serve(ctx context.Context, opts *options, log *slog.Logger) error {
	env := &commands.Env{}
	st, err := openEnv(ctx, opts, env)
	if err != nil {
		return err
	}
	defer st.Close()
	env.Log = log
	if err := refreshHooks(ctx, env); err != nil {
		return err
	}
	hostKey, err := gitd.LoadHostKey(filepath.Join(opts.Data, "ssh_host_ed25519_key"))
	if err != nil {
		return err
	}
	sock := filepath.Join(opts.Data, "run", "hook.sock")
	hookLn, err := listenUnix(sock, opts.Data)
	if err != nil {
		return err
	}
	sshLn, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		hookLn.Close()
		return fmt.Errorf("ssh listener: %w", err)
	}
	srv := gitd.New(gitd.Config{
		HostKey:     hostKey,
		Store:       st,
		Repos:       env.Repos,
		Catalog:     env.Catalog,
		SocketPath:  sock,
		Log:         log,
		IdleTimeout: 10 * time.Minute,
		Run: func(ctx context.Context, inv commands.Invocation, args []string) int {
			return commands.New(env, inv, nil).Execute(ctx, args)
		},
	})
	env.Git = srv.Git()

	errs := make(chan error, 2)
	go func() { errs <- srv.ServeHooks(hookLn) }()
	go func() { errs <- srv.ServeSSH(sshLn) }()
	log.Info("upscale server started", "ssh", sshLn.Addr().String(), "data", opts.Data, "store", storeName(opts.DB), "domain", opts.Domain)
	if admins, err := st.ListKeys(ctx, store.KeyFilter{AdminOnly: true}); err == nil && len(admins) == 0 {
		log.Info(fmt.Sprintf(`no admin key yet; add yours with: %s --data %s keys add --admin --name me --public "$(cat ~/.ssh/id_ed25519.pub)"`, env.Repos.Binary, opts.Data))
	}
	select {
	case <-ctx.Done():
		log.Info("stopping: waiting for running sessions", "grace", shutdownGrace.String())
	case err = <-errs:
		log.Error("server failed", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		log.Warn("sessions cut at shutdown", "err", serr)
	}
	os.Remove(sock)
	log.Info("upscale server stopped")
	return err
}

// refreshHooks rewrites the hook shims of every app whose shims point
// elsewhere (the binary moved since they were written).
func refreshHooks(ctx context.Context, env *commands.Env) error {
	apps, err := env.Store.ListApps(ctx, "")
	if err != nil {
		return err
	}
	for _, a := range apps {
		if _, err := env.Repos.EnsureHooks(names.App{Namespace: a.Namespace, Name: a.Name}); err != nil {
			return fmt.Errorf("app %s/%s: %w", a.Namespace, a.Name, err)
		}
	}
	return nil
}

// listenUnix opens the hook socket, refusing to steal it from a running
// server on the same data directory.
func listenUnix(path, data string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("hook socket: %w", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("another upscale server is running with data directory %s", data)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("hook socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("hook socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("hook socket: %w", err)
	}
	return l, nil
}

func storeName(dsn string) string {
	if dsn == "" {
		return "sqlite"
	}
	scheme, _, _ := strings.Cut(dsn, "://")
	return scheme
}
