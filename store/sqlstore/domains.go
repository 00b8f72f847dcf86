package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/upscalehq/upscale/store"
)

// AddDomain sets CreatedAt to now when it is zero. The hostname is the
// domains table's key, so two apps adding one hostname at once are told
// apart by the insert itself.
func (s *Store) AddDomain(ctx context.Context, d store.Domain) (store.Domain, error) {
	d.CreatedAt = stamp(d.CreatedAt)
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO domains (hostname, namespace, app, created_at) VALUES (?, ?, ?, ?)",
			d.Hostname, d.Namespace, d.App, d.CreatedAt.UnixNano())
		if violated(err) == noViolation {
			return err
		}
		// A missing app comes first, whatever the engine checked first.
		if err := appMustExist(ctx, tx, d.Namespace, d.App); err != nil {
			return err
		}
		return domainTaken(ctx, tx, d.Hostname)
	})
	if err != nil {
		return store.Domain{}, fmt.Errorf("domain %q: %w", d.Hostname, err)
	}
	return d, nil
}

// domainTaken is the ErrConflict of a hostname some app has, naming the app.
func domainTaken(ctx context.Context, tx *sql.Tx, hostname string) error {
	var namespace, app string
	err := tx.QueryRowContext(ctx, "SELECT namespace, app FROM domains WHERE hostname = ?", hostname).Scan(&namespace, &app)
	switch {
	case err == nil:
		return conflict("taken by " + namespace + "/" + app)
	case errors.Is(err, sql.ErrNoRows): // the app that had it was deleted since (MySQL)
		return store.ErrConflict
	}
	return err
}

// RemoveDomain matches the app as well as the hostname, so that a caller
// allowed to change one app cannot take another's hostname away.
func (s *Store) RemoveDomain(ctx context.Context, namespace, app, hostname string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		n, err := changed(tx.ExecContext(ctx, "DELETE FROM domains WHERE hostname = ? AND namespace = ? AND app = ?",
			hostname, namespace, app))
		if err != nil || n > 0 {
			return err
		}
		if err := appMustExist(ctx, tx, namespace, app); err != nil {
			return err
		}
		return fmt.Errorf("app %q has no domain %q: %w", namespace+"/"+app, hostname, store.ErrNotFound)
	})
	if err != nil {
		return fmt.Errorf("remove domain: %w", err)
	}
	return nil
}

func (s *Store) ListDomains(ctx context.Context, namespace, app string) ([]store.Domain, error) {
	if namespace == "" && app != "" {
		return nil, fmt.Errorf("list domains: app %q without its namespace", app)
	}
	var list []store.Domain
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		list, err = listScoped(ctx, tx, scanDomain, `SELECT hostname, namespace, app, created_at FROM domains
			WHERE (? = '' OR namespace = ?) AND (? = '' OR app = ?) ORDER BY namespace, app, hostname`, namespace, app)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	return list, nil
}

func scanDomain(r scanner) (store.Domain, error) {
	var d store.Domain
	var at int64
	err := r.Scan(&d.Hostname, &d.Namespace, &d.App, &at)
	d.CreatedAt = fromNanos(at)
	return d, err
}
