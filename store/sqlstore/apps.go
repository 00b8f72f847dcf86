package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/upscalehq/upscale/store"
)

const namespaceQuery = `SELECT n.name, n.created_at, (SELECT COUNT(*) FROM apps a WHERE a.namespace = n.name) FROM namespaces n`

func scanNamespace(r scanner) (store.Namespace, error) {
	var ns store.Namespace
	var at int64
	err := r.Scan(&ns.Name, &at, &ns.Apps)
	ns.CreatedAt = fromNanos(at)
	return ns, err
}

func (s *Store) CreateNamespace(ctx context.Context, name string) (store.Namespace, error) {
	ns := store.Namespace{Name: name, CreatedAt: now()}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO namespaces (name, created_at) VALUES (?, ?)", name, ns.CreatedAt.UnixNano())
		if violated(err) == uniqueKey {
			err = store.ErrConflict
		}
		return err
	})
	if err != nil {
		return store.Namespace{}, fmt.Errorf("namespace %q: %w", name, err)
	}
	return ns, nil
}

func (s *Store) GetNamespace(ctx context.Context, name string) (store.Namespace, error) {
	var ns store.Namespace
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		ns, err = scanNamespace(tx.QueryRowContext(ctx, namespaceQuery+" WHERE n.name = ?", name))
		return err
	})
	if err != nil {
		return store.Namespace{}, fmt.Errorf("namespace %q: %w", name, notFound(err))
	}
	return ns, nil
}

func (s *Store) ListNamespaces(ctx context.Context) ([]store.Namespace, error) {
	var list []store.Namespace
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		list, err = queryAll(ctx, tx, scanNamespace, namespaceQuery+" ORDER BY n.name")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	return list, nil
}

// DeleteNamespace leaves the keys to the foreign key's ON DELETE CASCADE.
func (s *Store) DeleteNamespace(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		var apps int
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM apps WHERE namespace = ?", name).Scan(&apps); err != nil {
			return err
		}
		if apps > 0 {
			return fmt.Errorf("still has %d %s: %w", apps, plural(apps, "app", "apps"), store.ErrNotEmpty)
		}
		n, err := changed(tx.ExecContext(ctx, "DELETE FROM namespaces WHERE name = ?", name))
		switch {
		case violated(err) == foreignKey: // an app created since the count (MySQL)
			return fmt.Errorf("still has apps: %w", store.ErrNotEmpty)
		case err == nil && n == 0:
			return store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("namespace %q: %w", name, err)
	}
	return nil
}

const appQuery = "SELECT namespace, name, deploy_branch, stopped, created_at FROM apps"

func scanApp(r scanner) (store.App, error) {
	var a store.App
	var at int64
	err := r.Scan(&a.Namespace, &a.Name, &a.DeployBranch, &a.Stopped, &at)
	a.CreatedAt = fromNanos(at)
	return a, err
}

func (s *Store) CreateApp(ctx context.Context, namespace, name string) (store.App, error) {
	a := store.App{Namespace: namespace, Name: name, DeployBranch: store.DefaultDeployBranch, CreatedAt: now()}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO apps (namespace, name, deploy_branch, created_at) VALUES (?, ?, ?, ?)",
			a.Namespace, a.Name, a.DeployBranch, a.CreatedAt.UnixNano())
		switch violated(err) {
		case uniqueKey:
			return store.ErrConflict
		case foreignKey:
			return fmt.Errorf("namespace %q: %w", namespace, store.ErrNotFound)
		}
		return err
	})
	if err != nil {
		return store.App{}, fmt.Errorf("app %q: %w", namespace+"/"+name, err)
	}
	return a, nil
}

func (s *Store) GetApp(ctx context.Context, namespace, name string) (store.App, error) {
	var a store.App
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		a, err = scanApp(tx.QueryRowContext(ctx, appQuery+" WHERE namespace = ? AND name = ?", namespace, name))
		return err
	})
	if err != nil {
		return store.App{}, fmt.Errorf("app %q: %w", namespace+"/"+name, notFound(err))
	}
	return a, nil
}

// ListApps with a namespace that does not exist is ErrNotFound rather than
// an empty list, so that a typo does not read as "no apps".
func (s *Store) ListApps(ctx context.Context, namespace string) ([]store.App, error) {
	var list []store.App
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		list, err = queryAll(ctx, tx, scanApp, appQuery+" WHERE ? = '' OR namespace = ? ORDER BY namespace, name", namespace, namespace)
		if err != nil || len(list) > 0 || namespace == "" {
			return err
		}
		return namespaceMustExist(ctx, tx, namespace)
	})
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	return list, nil
}

// DeleteApp leaves the deploy keys, pushes, releases and instances to ON
// DELETE CASCADE.
func (s *Store) DeleteApp(ctx context.Context, namespace, name string) error {
	return s.updateApp(ctx, namespace, name, "DELETE FROM apps WHERE namespace = ? AND name = ?", namespace, name)
}

func (s *Store) SetDeployBranch(ctx context.Context, namespace, name, branch string) error {
	return s.updateApp(ctx, namespace, name, "UPDATE apps SET deploy_branch = ? WHERE namespace = ? AND name = ?", branch, namespace, name)
}

func (s *Store) SetStopped(ctx context.Context, namespace, name string, stopped bool) error {
	return s.updateApp(ctx, namespace, name, "UPDATE apps SET stopped = ? WHERE namespace = ? AND name = ?", stopped, namespace, name)
}

// updateApp runs a statement that must match the one app.
func (s *Store) updateApp(ctx context.Context, namespace, name, query string, args ...any) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		n, err := changed(tx.ExecContext(ctx, query, args...))
		if err == nil && n == 0 {
			return store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("app %q: %w", namespace+"/"+name, err)
	}
	return nil
}

func namespaceMustExist(ctx context.Context, tx *sql.Tx, name string) error {
	ok, err := exists(ctx, tx, "SELECT 1 FROM namespaces WHERE name = ?", name)
	if err == nil && !ok {
		err = fmt.Errorf("namespace %q: %w", name, store.ErrNotFound)
	}
	return err
}

func appMustExist(ctx context.Context, tx *sql.Tx, namespace, name string) error {
	ok, err := exists(ctx, tx, "SELECT 1 FROM apps WHERE namespace = ? AND name = ?", namespace, name)
	if err == nil && !ok {
		err = fmt.Errorf("app %q: %w", namespace+"/"+name, store.ErrNotFound)
	}
	return err
}

// notFound maps a single-row query's "no rows" to store.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
