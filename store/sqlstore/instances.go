package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/upscalehq/upscale/store"
)

// SetInstances locks the app like the release methods do (see releases.go),
// so that it and Activate replace an app's instances one after the other,
// never interleaved.
func (s *Store) SetInstances(ctx context.Context, namespace, app string, instances []store.Instance) error {
	list, err := instancesOf(namespace, app, 0, instances)
	if err != nil {
		return fmt.Errorf("set instances of app %q: %w", namespace+"/"+app, err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		if err := s.lockApp(ctx, tx, namespace, app); err != nil {
			return err
		}
		return replaceInstances(ctx, tx, namespace, app, list)
	})
	if err != nil {
		return fmt.Errorf("set instances: %w", err)
	}
	return nil
}

// instancesOf checks that instances belong to the app (and to release,
// unless it is 0) and fills in what they leave out, in a copy. A mismatch is
// a caller's bug, not a state of the store, so it is none of the sentinels.
func instancesOf(namespace, app string, release int, instances []store.Instance) ([]store.Instance, error) {
	list := make([]store.Instance, len(instances))
	for i, in := range instances {
		if in.Name == "" {
			return nil, errors.New("an instance has no name")
		}
		if in.Namespace == "" && in.App == "" {
			in.Namespace, in.App = namespace, app
		}
		if in.Namespace != namespace || in.App != app {
			return nil, fmt.Errorf("instance %q is of app %q", in.Name, in.Namespace+"/"+in.App)
		}
		if in.Release == 0 {
			in.Release = release
		}
		if release != 0 && in.Release != release {
			return nil, fmt.Errorf("instance %q is of release v%d", in.Name, in.Release)
		}
		in.CreatedAt = stamp(in.CreatedAt)
		list[i] = in
	}
	return list, nil
}

// replaceInstances deletes the app's instances first, so that a new list
// may reuse the names of the old one.
func replaceInstances(ctx context.Context, tx *sql.Tx, namespace, app string, list []store.Instance) error {
	if _, err := tx.ExecContext(ctx, "DELETE FROM instances WHERE namespace = ? AND app = ?", namespace, app); err != nil {
		return err
	}
	for _, in := range list {
		_, err := tx.ExecContext(ctx, `INSERT INTO instances
			(name, process, namespace, app, release_version, host, addr, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			in.Name, in.Process, in.Namespace, in.App, in.Release, in.Host, in.Addr, in.CreatedAt.UnixNano())
		switch violated(err) {
		case uniqueKey:
			return fmt.Errorf("instance %q: %w", in.Name, store.ErrConflict)
		case foreignKey: // the app is locked, so it is the release that is missing
			return fmt.Errorf("instance %q: %s: %w", in.Name, releaseLabel(namespace, app, in.Release), store.ErrNotFound)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) ListInstances(ctx context.Context, namespace, app string) ([]store.Instance, error) {
	if namespace == "" && app != "" {
		return nil, fmt.Errorf("list instances: app %q without its namespace", app)
	}
	var list []store.Instance
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		list, err = listScoped(ctx, tx, scanInstance, `SELECT name, process, namespace, app, release_version, host, addr, created_at
			FROM instances WHERE (? = '' OR namespace = ?) AND (? = '' OR app = ?) ORDER BY namespace, app, name`, namespace, app)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	return list, nil
}

func scanInstance(r scanner) (store.Instance, error) {
	var in store.Instance
	var at int64
	err := r.Scan(&in.Name, &in.Process, &in.Namespace, &in.App, &in.Release, &in.Host, &in.Addr, &at)
	in.CreatedAt = fromNanos(at)
	return in, err
}

// listScoped runs query, which filters on namespace and app as the list
// methods do: everything when both are "", one namespace's, or one app's.
// Nothing found is ErrNotFound when the namespace or app does not exist.
func listScoped[T any](ctx context.Context, tx *sql.Tx, scan func(scanner) (T, error), query, namespace, app string) ([]T, error) {
	list, err := queryAll(ctx, tx, scan, query, namespace, namespace, app, app)
	switch {
	case err != nil || len(list) > 0 || namespace == "":
		return list, err
	case app == "":
		return nil, namespaceMustExist(ctx, tx, namespace)
	}
	return nil, appMustExist(ctx, tx, namespace, app)
}
