package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/store"
)

const keyQuery = `SELECT fingerprint, name, role, COALESCE(namespace, ''), COALESCE(app, ''),
	type, public_key, added_by, created_at FROM ssh_keys`

func scanKey(r scanner) (store.Key, error) {
	var k store.Key
	var at int64
	err := r.Scan(&k.Fingerprint, &k.Name, &k.Role, &k.Namespace, &k.App, &k.Type, &k.PublicKey, &k.AddedBy, &at)
	k.CreatedAt = fromNanos(at)
	return k, err
}

// keyLabel names a key by its name and scope for error messages.
func keyLabel(namespace, name string) string {
	if namespace == "" {
		return fmt.Sprintf("admin key %q", name)
	}
	return fmt.Sprintf("key %q of namespace %q", name, namespace)
}

// AddKey refuses a role whose scope does not fit, since the schema trusts
// namespace and app to say which keys the cascades remove.
func (s *Store) AddKey(ctx context.Context, k store.Key) (store.Key, error) {
	if err := checkScope(k); err != nil {
		return store.Key{}, err
	}
	k.CreatedAt = stamp(k.CreatedAt)
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO ssh_keys
			(fingerprint, name, role, namespace, app, type, public_key, added_by, created_at)
			VALUES (?, ?, ?, NULLIF(?, ''), NULLIF(?, ''), ?, ?, ?, ?)`,
			k.Fingerprint, k.Name, k.Role, k.Namespace, k.App, k.Type, k.PublicKey, k.AddedBy, k.CreatedAt.UnixNano())
		switch violated(err) {
		case noViolation:
			if err != nil {
				return fmt.Errorf("add %s: %w", keyLabel(k.Namespace, k.Name), err)
			}
			return nil
		case uniqueKey:
			// Which key is taken? The engines check them in different
			// orders; a taken fingerprint is the one to report.
			taken, err := exists(ctx, tx, "SELECT 1 FROM ssh_keys WHERE fingerprint = ?", k.Fingerprint)
			switch {
			case err != nil:
				return err
			case taken:
				return fmt.Errorf("%s: %w", k.Fingerprint, store.ErrKeyTaken)
			}
			return fmt.Errorf("%s: %w", keyLabel(k.Namespace, k.Name), store.ErrKeyNameTaken)
		}
		// A foreign key: find out which parent is missing.
		if err := namespaceMustExist(ctx, tx, k.Namespace); err != nil {
			return err
		}
		if err := appMustExist(ctx, tx, k.Namespace, k.App); err != nil {
			return err
		}
		return err
	})
	if err != nil {
		return store.Key{}, err
	}
	return k, nil
}

func checkScope(k store.Key) error {
	var problem string
	switch k.Role {
	case keys.RoleAdmin:
		if k.Namespace != "" || k.App != "" {
			problem = "an admin key has no namespace or app"
		}
	case keys.RoleNamespace:
		if k.Namespace == "" || k.App != "" {
			problem = "a namespace key has a namespace and no app"
		}
	case keys.RoleDeploy:
		if k.Namespace == "" || k.App == "" {
			problem = "a deploy key has a namespace and an app"
		}
	case keys.RoleBootstrap:
		// App holds the host it may bootstrap; with no namespace the
		// apps foreign key does not apply.
		if k.Namespace != "" || k.App == "" {
			problem = "a bootstrap key has a host and no namespace"
		}
	default:
		problem = fmt.Sprintf("unknown role %q", k.Role)
	}
	if problem != "" {
		return fmt.Errorf("key %q: %s", k.Name, problem)
	}
	return nil
}

func (s *Store) KeyByFingerprint(ctx context.Context, fingerprint string) (store.Key, error) {
	var k store.Key
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		k, err = scanKey(tx.QueryRowContext(ctx, keyQuery+" WHERE fingerprint = ?", fingerprint))
		return err
	})
	if err != nil {
		return store.Key{}, fmt.Errorf("key %s: %w", fingerprint, notFound(err))
	}
	return k, nil
}

// KeyByName finds an admin key when namespace is "".
func (s *Store) KeyByName(ctx context.Context, namespace, name string) (store.Key, error) {
	var k store.Key
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		k, err = scanKey(tx.QueryRowContext(ctx, keyQuery+" WHERE scope = ? AND name = ?", namespace, name))
		return err
	})
	if err != nil {
		return store.Key{}, fmt.Errorf("%s: %w", keyLabel(namespace, name), notFound(err))
	}
	return k, nil
}

// ListKeys with both filter fields set selects what both select: nothing.
// A namespace that does not exist is ErrNotFound, as in ListApps.
func (s *Store) ListKeys(ctx context.Context, filter store.KeyFilter) ([]store.Key, error) {
	var list []store.Key
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		list, err = queryAll(ctx, tx, scanKey,
			keyQuery+" WHERE (? = '' OR namespace = ?) AND (? = 0 OR namespace IS NULL) ORDER BY scope, name",
			filter.Namespace, filter.Namespace, filter.AdminOnly)
		if err != nil || len(list) > 0 || filter.Namespace == "" {
			return err
		}
		return namespaceMustExist(ctx, tx, filter.Namespace)
	})
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return list, nil
}

func (s *Store) RemoveKey(ctx context.Context, fingerprint string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		n, err := changed(tx.ExecContext(ctx, "DELETE FROM ssh_keys WHERE fingerprint = ?", fingerprint))
		if err == nil && n == 0 {
			return store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("key %s: %w", fingerprint, err)
	}
	return nil
}
