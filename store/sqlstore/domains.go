package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/upscalehq/upscale/store"
)

const domainColumns = "hostname, namespace, app, token, created_at, checked_at, verified_at, failure"

// AddDomain sets CreatedAt to now when it is zero. A claim is pending when
// added, whatever d says: only VerifyDomain makes one verified.
func (s *Store) AddDomain(ctx context.Context, d store.Domain) (store.Domain, error) {
	d.CreatedAt = stamp(d.CreatedAt)
	d.CheckedAt, d.VerifiedAt, d.Failure = time.Time{}, time.Time{}, ""
	err := s.write(ctx, func(tx *sql.Tx) error {
		// A missing app comes first, whatever the engine checked first.
		if err := appMustExist(ctx, tx, d.Namespace, d.App); err != nil {
			return err
		}
		if err := domainVerifiedElsewhere(ctx, tx, d.Hostname, d.Namespace, d.App); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO domains ("+domainColumns+") VALUES (?, ?, ?, ?, ?, 0, 0, '')",
			d.Hostname, d.Namespace, d.App, d.Token, d.CreatedAt.UnixNano())
		switch violated(err) {
		case uniqueKey: // this app's own claim
			return conflict("taken by " + d.Namespace + "/" + d.App)
		case foreignKey: // the app was deleted since (MySQL reads committed rows)
			return fmt.Errorf("app %q: %w", d.Namespace+"/"+d.App, store.ErrNotFound)
		}
		return err
	})
	if err != nil {
		return store.Domain{}, fmt.Errorf("domain %q: %w", d.Hostname, err)
	}
	return d, nil
}

// domainVerifiedElsewhere is the ErrConflict of a hostname another app has
// verified, naming that app.
func domainVerifiedElsewhere(ctx context.Context, tx *sql.Tx, hostname, namespace, app string) error {
	var ns, name string
	err := tx.QueryRowContext(ctx, "SELECT namespace, app FROM domains WHERE hostname = ? AND verified_at <> 0 AND NOT (namespace = ? AND app = ?)",
		hostname, namespace, app).Scan(&ns, &name)
	switch {
	case err == nil:
		return conflict("taken by " + ns + "/" + name)
	case errors.Is(err, sql.ErrNoRows):
		return nil
	}
	return err
}

func (s *Store) VerifyDomain(ctx context.Context, namespace, app, hostname string, at time.Time) (store.Domain, error) {
	at = stamp(at)
	var d store.Domain
	err := s.write(ctx, func(tx *sql.Tx) (err error) {
		if d, err = getDomain(ctx, tx, namespace, app, hostname); err != nil || d.Verified() {
			return err
		}
		if err := domainVerifiedElsewhere(ctx, tx, hostname, namespace, app); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE domains SET checked_at = ?, verified_at = ?, failure = '' WHERE hostname = ? AND namespace = ? AND app = ?",
			at.UnixNano(), at.UnixNano(), hostname, namespace, app)
		if violated(err) == uniqueKey {
			// Another app's claim was verified between the check and the
			// update (MySQL): the unique key decided.
			return conflict("taken by another app")
		}
		d.CheckedAt, d.VerifiedAt, d.Failure = at, at, ""
		return err
	})
	if err != nil {
		return store.Domain{}, fmt.Errorf("verify domain %q: %w", hostname, err)
	}
	return d, nil
}

func (s *Store) FailDomainCheck(ctx context.Context, namespace, app, hostname string, at time.Time, why string) (store.Domain, error) {
	at = stamp(at)
	var d store.Domain
	err := s.write(ctx, func(tx *sql.Tx) (err error) {
		if d, err = getDomain(ctx, tx, namespace, app, hostname); err != nil || d.Verified() {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE domains SET checked_at = ?, failure = ? WHERE hostname = ? AND namespace = ? AND app = ?",
			at.UnixNano(), why, hostname, namespace, app)
		d.CheckedAt, d.Failure = at, why
		return err
	})
	if err != nil {
		return store.Domain{}, fmt.Errorf("domain check of %q: %w", hostname, err)
	}
	return d, nil
}

// getDomain reads one claim; ErrNotFound names the app when it is the app
// that is missing.
func getDomain(ctx context.Context, tx *sql.Tx, namespace, app, hostname string) (store.Domain, error) {
	d, err := scanDomain(tx.QueryRowContext(ctx, "SELECT "+domainColumns+" FROM domains WHERE hostname = ? AND namespace = ? AND app = ?",
		hostname, namespace, app))
	if !errors.Is(err, sql.ErrNoRows) {
		return d, err
	}
	if err := appMustExist(ctx, tx, namespace, app); err != nil {
		return d, err
	}
	return d, fmt.Errorf("app %q has no domain %q: %w", namespace+"/"+app, hostname, store.ErrNotFound)
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
		list, err = listScoped(ctx, tx, scanDomain, `SELECT `+domainColumns+` FROM domains
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
	var created, checked, verified int64
	err := r.Scan(&d.Hostname, &d.Namespace, &d.App, &d.Token, &created, &checked, &verified, &d.Failure)
	d.CreatedAt, d.CheckedAt, d.VerifiedAt = fromNanos(created), optNanos(checked), optNanos(verified)
	return d, err
}

// optNanos is the zero time for 0, which the schema uses for "never".
func optNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return fromNanos(n)
}
