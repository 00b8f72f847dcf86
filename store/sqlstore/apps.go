package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/upscalehq/upscale/store"
)

const namespaceQuery = `SELECT n.name, n.created_at, (SELECT COUNT(*) FROM apps a WHERE a.namespace = n.name),
	n.quota_apps, n.quota_instances, n.quota_memory, n.quota_exec FROM namespaces n`

func scanNamespace(r scanner) (store.Namespace, error) {
	var ns store.Namespace
	var at int64
	var apps, instances, memory, exec sql.NullInt64
	err := r.Scan(&ns.Name, &at, &ns.Apps, &apps, &instances, &memory, &exec)
	ns.CreatedAt = fromNanos(at)
	ns.Quota = store.Quota{Apps: int(apps.Int64), Instances: int(instances.Int64), Memory: memory.Int64, Exec: int(exec.Int64)}
	return ns, err
}

// SetQuota writes NULL for a quota back at the default, so that the
// operator's default, not a copy of it, applies.
func (s *Store) SetQuota(ctx context.Context, namespace string, c store.QuotaChange) (store.Quota, error) {
	var sets []string
	var args []any
	add := func(column string, v *int64) error {
		if v == nil {
			return nil
		}
		if *v < 0 {
			return fmt.Errorf("%s %d: a quota is 0 (the default) or more", column, *v)
		}
		sets = append(sets, column+" = ?")
		if *v == 0 {
			args = append(args, nil)
		} else {
			args = append(args, *v)
		}
		return nil
	}
	widen := func(p *int) *int64 {
		if p == nil {
			return nil
		}
		v := int64(*p)
		return &v
	}
	var q store.Quota
	err := s.write(ctx, func(tx *sql.Tx) error {
		for _, f := range []struct {
			column string
			v      *int64
		}{{"quota_apps", widen(c.Apps)}, {"quota_instances", widen(c.Instances)}, {"quota_memory", c.Memory}, {"quota_exec", widen(c.Exec)}} {
			if err := add(f.column, f.v); err != nil {
				return err
			}
		}
		if len(sets) > 0 {
			if _, err := tx.ExecContext(ctx, "UPDATE namespaces SET "+strings.Join(sets, ", ")+" WHERE name = ?", append(args, namespace)...); err != nil {
				return err
			}
		}
		ns, err := scanNamespace(tx.QueryRowContext(ctx, namespaceQuery+" WHERE n.name = ?", namespace))
		q = ns.Quota
		return notFound(err)
	})
	if err != nil {
		return store.Quota{}, fmt.Errorf("namespace %q: %w", namespace, err)
	}
	return q, nil
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
		var volumes int
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM volumes WHERE namespace = ?", name).Scan(&volumes); err != nil {
			return err
		}
		if volumes > 0 {
			return fmt.Errorf("still has %d %s: %w", volumes, plural(volumes, "volume", "volumes"), store.ErrNotEmpty)
		}
		n, err := changed(tx.ExecContext(ctx, "DELETE FROM namespaces WHERE name = ?", name))
		switch {
		case violated(err) == foreignKey: // an app or volume created since the count (MySQL)
			return fmt.Errorf("still has apps or volumes: %w", store.ErrNotEmpty)
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

const appQuery = "SELECT namespace, name, deploy_branch, stopped, no_https_redirect, hsts_max_age, created_at, " +
	"COALESCE((SELECT r.version FROM releases r WHERE r.namespace = apps.namespace AND r.app = apps.name AND r.status = 'live'), 0), " +
	"(SELECT COUNT(*) FROM instances i WHERE i.namespace = apps.namespace AND i.app = apps.name) FROM apps"

func scanApp(r scanner) (store.App, error) {
	var a store.App
	var at int64
	err := r.Scan(&a.Namespace, &a.Name, &a.DeployBranch, &a.Stopped, &a.NoHTTPSRedirect, &a.HSTSMaxAge, &at, &a.LiveVersion, &a.Instances)
	a.CreatedAt = fromNanos(at)
	return a, err
}

// CreateApp knows nothing of quotas (so it also works on a schema from
// before them, as the migration tests need).
func (s *Store) CreateApp(ctx context.Context, namespace, name string) (store.App, error) {
	return s.createApp(ctx, namespace, name, nil)
}

// CreateAppWithin counts under the namespace's row lock (on MySQL; SQLite
// serializes writers anyway), which every create in the namespace takes.
func (s *Store) CreateAppWithin(ctx context.Context, namespace, name string, maxApps int) (store.App, error) {
	return s.createApp(ctx, namespace, name, func(tx *sql.Tx) error {
		query := "SELECT quota_apps FROM namespaces WHERE name = ?"
		if s.driver == "mysql" {
			query += " FOR UPDATE"
		}
		var own sql.NullInt64
		switch err := tx.QueryRowContext(ctx, query, namespace).Scan(&own); {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("namespace %q: %w", namespace, store.ErrNotFound)
		case err != nil:
			return err
		}
		limit := (store.Quota{Apps: int(own.Int64)}).Or(store.Quota{Apps: maxApps}).Apps
		if limit > 0 {
			var n int
			if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM apps WHERE namespace = ?", namespace).Scan(&n); err != nil {
				return err
			}
			if n >= limit {
				return fmt.Errorf("namespace %q holds %d %s, its quota: %w", namespace, n, plural(n, "app", "apps"), store.ErrOverQuota)
			}
		}
		return nil
	})
}

// createApp runs check, when not nil, in the insert's transaction first.
func (s *Store) createApp(ctx context.Context, namespace, name string, check func(tx *sql.Tx) error) (store.App, error) {
	a := store.App{Namespace: namespace, Name: name, DeployBranch: store.DefaultDeployBranch, CreatedAt: now()}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if check != nil {
			if err := check(tx); err != nil {
				return err
			}
		}
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

func (s *Store) SetHTTPSRedirect(ctx context.Context, namespace, name string, on bool) error {
	return s.updateApp(ctx, namespace, name, "UPDATE apps SET no_https_redirect = ? WHERE namespace = ? AND name = ?", !on, namespace, name)
}

func (s *Store) SetHSTS(ctx context.Context, namespace, name string, maxAge int64) error {
	if maxAge < 0 {
		return fmt.Errorf("HSTS max-age %d: want 0 (none) or more", maxAge)
	}
	return s.updateApp(ctx, namespace, name, "UPDATE apps SET hsts_max_age = ? WHERE namespace = ? AND name = ?", maxAge, namespace, name)
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
