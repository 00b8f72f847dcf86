package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/store"
)

const (
	maxCertKey   = 1024
	maxCertValue = 1 << 20
	maxCertError = 1024
)

func checkCertKey(key string) error {
	switch {
	case key == "":
		return errors.New("certificate data: empty key")
	case len(key) > maxCertKey:
		return fmt.Errorf("certificate data: key of %d bytes, over %d", len(key), maxCertKey)
	case !utf8.ValidString(key) || strings.ContainsRune(key, 0):
		return fmt.Errorf("certificate data: key %q is not valid UTF-8 text", key)
	case strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/"):
		return fmt.Errorf("certificate data: key %q starts or ends with /", key)
	}
	return nil
}

func (s *Store) PutCertData(ctx context.Context, key string, value []byte) error {
	if err := checkCertKey(key); err != nil {
		return err
	}
	if len(value) > maxCertValue {
		return fmt.Errorf("certificate data %q: %d bytes, over %d", key, len(value), maxCertValue)
	}
	if value == nil {
		value = []byte{}
	}
	at := now().UnixNano()
	err := s.write(ctx, func(tx *sql.Tx) error {
		update := func() (int64, error) {
			return changed(tx.ExecContext(ctx, "UPDATE cert_data SET v = ?, modified_at = ? WHERE k = ?", value, at, key))
		}
		n, err := update()
		if err != nil || n > 0 {
			return err
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO cert_data (k, v, modified_at) VALUES (?, ?, ?)", key, value, at)
		if violated(err) == uniqueKey {
			// Another server put the same key between the two (MySQL reads
			// committed rows): the last write wins, as with a file.
			_, err = update()
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("certificate data %q: %w", key, err)
	}
	return nil
}

func (s *Store) GetCertData(ctx context.Context, key string) (store.CertEntry, error) {
	e := store.CertEntry{Key: key}
	var at int64
	err := s.read(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, "SELECT v, modified_at FROM cert_data WHERE k = ?", key).Scan(&e.Value, &at)
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.CertEntry{}, fmt.Errorf("certificate data %q: %w", key, store.ErrNotFound)
	case err != nil:
		return store.CertEntry{}, fmt.Errorf("certificate data %q: %w", key, err)
	}
	if e.Value == nil {
		e.Value = []byte{}
	}
	e.Size, e.Modified = int64(len(e.Value)), fromNanos(at)
	return e, nil
}

// prefixEnd is the smallest string greater than every string that starts
// with prefix, for a range scan on a column that compares bytes; "" when
// there is none (every byte 0xff, which UTF-8 text never holds).
func prefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return ""
}

// bytesArg is a range bound for cert_data's key, which need not be valid
// UTF-8: bytes for MySQL's VARBINARY column, text for SQLite, where a BLOB
// sorts after every TEXT.
func (s *Store) bytesArg(b string) any {
	if s.driver == "mysql" {
		return []byte(b)
	}
	return b
}

func (s *Store) ListCertData(ctx context.Context, prefix string) ([]store.CertEntry, error) {
	if !utf8.ValidString(prefix) {
		return nil, fmt.Errorf("certificate data: prefix %q is not valid UTF-8", prefix)
	}
	query, args := "SELECT k, LENGTH(v), modified_at FROM cert_data", []any{}
	if prefix != "" {
		query, args = query+" WHERE k >= ? AND k < ?", []any{s.bytesArg(prefix), s.bytesArg(prefixEnd(prefix))}
	}
	var out []store.CertEntry
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		out, err = queryAll(ctx, tx, func(r scanner) (store.CertEntry, error) {
			var e store.CertEntry
			var key []byte // VARBINARY on MySQL
			var at int64
			err := r.Scan(&key, &e.Size, &at)
			e.Key, e.Modified = string(key), fromNanos(at)
			return e, err
		}, query+" ORDER BY k", args...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list certificate data: %w", err)
	}
	return out, nil
}

func (s *Store) DeleteCertData(ctx context.Context, key string) error {
	if err := checkCertKey(key); err != nil {
		return err
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "DELETE FROM cert_data WHERE k = ? OR (k >= ? AND k < ?)",
			key, s.bytesArg(key+"/"), s.bytesArg(prefixEnd(key+"/")))
		return err
	})
	if err != nil {
		return fmt.Errorf("delete certificate data %q: %w", key, err)
	}
	return nil
}

func (s *Store) LockCert(ctx context.Context, name, owner string, until time.Time) (bool, error) {
	if name == "" || owner == "" {
		return false, errors.New("certificate lock: empty name or owner")
	}
	var got bool
	err := s.write(ctx, func(tx *sql.Tx) error {
		// One statement decides between the holder extending its lease and
		// anyone taking an expired lock, so two servers cannot both win.
		n, err := changed(tx.ExecContext(ctx, "UPDATE cert_locks SET owner = ?, expires_at = ? WHERE name = ? AND (owner = ? OR expires_at <= ?)",
			owner, until.UnixNano(), name, owner, now().UnixNano()))
		if err != nil || n > 0 {
			got = n > 0
			return err
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO cert_locks (name, owner, expires_at) VALUES (?, ?, ?)", name, owner, until.UnixNano())
		if violated(err) == uniqueKey { // held, and not expired
			return nil
		}
		got = err == nil
		return err
	})
	if err != nil {
		return false, fmt.Errorf("certificate lock %q: %w", name, err)
	}
	return got, nil
}

func (s *Store) UnlockCert(ctx context.Context, name, owner string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "DELETE FROM cert_locks WHERE name = ? AND owner = ?", name, owner)
		return err
	})
	if err != nil {
		return fmt.Errorf("certificate lock %q: %w", name, err)
	}
	return nil
}

const certStatusColumns = "name, issuer, state, not_after, last_error, failures, next_try, updated_at"

func nanosOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func timeOrZero(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return fromNanos(n)
}

func (s *Store) SetCertStatus(ctx context.Context, st store.CertStatus) error {
	if st.Name == "" {
		return errors.New("certificate status: empty name")
	}
	st.UpdatedAt = stamp(st.UpdatedAt)
	st.LastError = msgtext.Truncate(msgtext.OneLine(st.LastError), maxCertError)
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM cert_status WHERE name = ?", st.Name); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO cert_status ("+certStatusColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			st.Name, st.Issuer, string(st.State), nanosOrZero(st.NotAfter), st.LastError, st.Failures,
			nanosOrZero(st.NextTry), st.UpdatedAt.UnixNano())
		if violated(err) == uniqueKey {
			// Another server wrote the same name in between (MySQL); its
			// status is as fresh as ours.
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("certificate status of %q: %w", st.Name, err)
	}
	return nil
}

func (s *Store) ListCertStatus(ctx context.Context) ([]store.CertStatus, error) {
	var out []store.CertStatus
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		out, err = queryAll(ctx, tx, func(r scanner) (store.CertStatus, error) {
			var st store.CertStatus
			var state string
			var notAfter, next, updated int64
			err := r.Scan(&st.Name, &st.Issuer, &state, &notAfter, &st.LastError, &st.Failures, &next, &updated)
			st.State, st.NotAfter, st.NextTry, st.UpdatedAt = store.CertState(state), timeOrZero(notAfter), timeOrZero(next), fromNanos(updated)
			return st, err
		}, "SELECT "+certStatusColumns+" FROM cert_status ORDER BY name")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list certificate status: %w", err)
	}
	return out, nil
}

func (s *Store) DeleteCertStatus(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		n, err := changed(tx.ExecContext(ctx, "DELETE FROM cert_status WHERE name = ?", name))
		if err == nil && n == 0 {
			return store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("certificate status of %q: %w", name, err)
	}
	return nil
}

func (s *Store) ReserveCertIssue(ctx context.Context, domain, name string, at, since time.Time, max int) (int64, error) {
	if domain == "" || name == "" || max < 1 {
		return 0, fmt.Errorf("certificate order for %q under %q: domain, name and a quota of at least 1 needed", name, domain)
	}
	at = stamp(at)
	var id int64
	// The domain's row is the lock every reservation takes (MySQL; SQLite
	// serializes writers anyway). It is made in a transaction of its own:
	// on InnoDB an INSERT IGNORE that finds the row takes a shared lock on
	// it, and shared holders that all want it exclusive deadlock.
	insert := "INSERT OR IGNORE INTO cert_quota (domain) VALUES (?)"
	lock := "SELECT domain FROM cert_quota WHERE domain = ?"
	if s.driver == "mysql" {
		insert = "INSERT IGNORE INTO cert_quota (domain) VALUES (?)"
		lock += " FOR UPDATE"
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, insert, domain)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("certificate order for %q: %w", name, err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		var d string
		if err := tx.QueryRowContext(ctx, lock, domain).Scan(&d); err != nil {
			return err
		}
		n, err := countIssues(ctx, tx, domain, since)
		if err != nil {
			return err
		}
		if n >= max {
			return fmt.Errorf("%d certificates ordered for %s since %s, the most allowed: %w",
				n, domain, since.UTC().Format(time.RFC3339), store.ErrOverQuota)
		}
		res, err := tx.ExecContext(ctx, "INSERT INTO cert_issues (domain, name, at) VALUES (?, ?, ?)", domain, name, at.UnixNano())
		if err != nil {
			return err
		}
		id, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("certificate order for %q: %w", name, err)
	}
	return id, nil
}

func countIssues(ctx context.Context, tx *sql.Tx, domain string, since time.Time) (int, error) {
	var n int
	err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM cert_issues WHERE domain = ? AND at >= ?", domain, since.UnixNano()).Scan(&n)
	return n, err
}

func (s *Store) CancelCertIssue(ctx context.Context, id int64) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "DELETE FROM cert_issues WHERE id = ?", id)
		return err
	})
	if err != nil {
		return fmt.Errorf("cancel certificate order %d: %w", id, err)
	}
	return nil
}

func (s *Store) CountCertIssues(ctx context.Context, domain string, since time.Time) (int, error) {
	var n int
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		n, err = countIssues(ctx, tx, domain, since)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("count certificate orders for %q: %w", domain, err)
	}
	return n, nil
}
