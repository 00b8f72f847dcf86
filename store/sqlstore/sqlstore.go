// Package sqlstore implements store.Store on SQLite (the default, pure Go)
// and on MariaDB/MySQL. The Go code is shared; only the migrations and the
// way Open serializes them differ between the two.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	_ "github.com/go-sql-driver/mysql" // driver "mysql"
	_ "modernc.org/sqlite"             // driver "sqlite"

	"github.com/upscalehq/upscale/store"
)

// Store is a store.Store on a SQL database. It is safe for concurrent use.
type Store struct {
	db     *sql.DB // reads; on MySQL writes too
	writer *sql.DB // writes: on SQLite one connection, see Open
	driver string  // "sqlite" or "mysql"
}

var _ store.Store = (*Store)(nil)

// Open opens the database dsn names and brings its schema up to date.
//
//	""                                       SQLite at dataDir/upscale.db (dataDir is created)
//	sqlite:PATH                              SQLite at PATH
//	mysql://USER:PASS@tcp(HOST:PORT)/DBNAME  MariaDB or MySQL; ?PARAM=VALUE&... as the driver takes
func Open(ctx context.Context, dsn, dataDir string) (*Store, error) {
	return openSchema(ctx, dsn, dataDir, math.MaxInt)
}

// openSchema is Open that applies migrations up to version upTo only, so
// that tests can make a database as an older release of upscale left it.
func openSchema(ctx context.Context, dsn, dataDir string, upTo int) (*Store, error) {
	driver, source, err := parseDSN(dsn, dataDir)
	if err != nil {
		return nil, err
	}
	if dsn == "" {
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
	}
	db, err := sql.Open(driver, source)
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", driver, err)
	}
	s := &Store{db: db, writer: db, driver: driver}
	switch driver {
	case "mysql":
		// Servers drop idle connections after wait_timeout; recycle ours first.
		db.SetConnMaxLifetime(3 * time.Minute)
	case "sqlite":
		// SQLite has one writer at a time. Writers of this process queue in
		// the pool, in order, for a single connection; busy_timeout is left
		// to arbitrate between processes only. Many connections polling for
		// the lock instead starve some of them past the timeout.
		if s.writer, err = sql.Open(driver, source); err != nil {
			db.Close()
			return nil, fmt.Errorf("open %s database: %w", driver, err)
		}
		s.writer.SetMaxOpenConns(1)
		if err := useWAL(ctx, s.writer); err != nil {
			s.Close()
			return nil, fmt.Errorf("%s database: %w", driver, err)
		}
	}
	if err := s.migrate(ctx, upTo); err != nil {
		s.Close()
		return nil, fmt.Errorf("%s database: %w", driver, err)
	}
	return s, nil
}

// useWAL puts a SQLite file in WAL mode, where readers do not wait for the
// writer; the file keeps the mode. It is not a DSN pragma because when two
// processes convert a new file at once, SQLite answers BUSY to one of them
// without waiting for busy_timeout, and a pragma in the DSN would then fail
// the connection.
func useWAL(ctx context.Context, db *sql.DB) error {
	for delay := 5 * time.Millisecond; ; delay *= 2 {
		var mode string
		err := db.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode)
		switch {
		case err == nil && mode != "wal":
			return fmt.Errorf("journal mode is %q, want wal", mode)
		case err == nil:
			return nil
		case !isBusy(err) || delay > time.Second:
			return fmt.Errorf("set WAL mode: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

// Close closes the database.
func (s *Store) Close() error {
	err := s.db.Close()
	if s.writer != s.db {
		err = errors.Join(err, s.writer.Close())
	}
	return err
}

// write runs fn in a read-write transaction, read in a read-only one. On
// SQLite the read-write kind takes the write lock at BEGIN (_txlock): one
// that only locked when it first wrote could find another writer ahead and
// get BUSY at once, without busy_timeout, since waiting could deadlock.
func (s *Store) write(ctx context.Context, fn func(*sql.Tx) error) error {
	return s.inTx(ctx, false, fn)
}

func (s *Store) read(ctx context.Context, fn func(*sql.Tx) error) error {
	return s.inTx(ctx, true, fn)
}

func (s *Store) inTx(ctx context.Context, readOnly bool, fn func(*sql.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := s.tryTx(ctx, readOnly, fn)
		// InnoDB rolls back a deadlock victim's whole transaction, and running
		// it again is the documented remedy.
		if err == nil || attempt == 3 || !isDeadlock(err) {
			return err
		}
	}
}

func (s *Store) tryTx(ctx context.Context, readOnly bool, fn func(*sql.Tx) error) error {
	db := s.writer
	opts := &sql.TxOptions{ReadOnly: readOnly}
	switch {
	case readOnly:
		db = s.db
	case s.driver == "mysql":
		// InnoDB's default, REPEATABLE READ, locks the gaps next to the rows
		// a write scans, and those belong to neighbours: two apps replacing
		// their instances then wait for each other's gap and deadlock. The
		// methods lock what they must serialize on (lockApp), so gap locks
		// bring nothing but those deadlocks. (With the binary log on, READ
		// COMMITTED wants binlog_format ROW or MIXED, the defaults.)
		opts.Isolation = sql.LevelReadCommitted
	}
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// queryAll runs a query and scans every row with scan.
func queryAll[T any](ctx context.Context, tx *sql.Tx, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// exists reports whether query finds a row.
func exists(ctx context.Context, tx *sql.Tx, query string, args ...any) (bool, error) {
	var one int
	err := tx.QueryRowContext(ctx, query, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// changed returns how many rows an UPDATE or DELETE matched (MySQL counts
// matched rather than changed rows because Open sets clientFoundRows).
func changed(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// now is the store's clock, in the form nanos gives back so that what a
// method returns equals what a later read returns.
func now() time.Time { return fromNanos(time.Now().UnixNano()) }

// stamp is t, or now when t is zero, as stored.
func stamp(t time.Time) time.Time {
	if t.IsZero() {
		return now()
	}
	return fromNanos(t.UnixNano())
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }
