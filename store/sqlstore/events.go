package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"math"

	"github.com/upscalehq/upscale/store"
)

// RecordEvent sets At to now when it is zero.
func (s *Store) RecordEvent(ctx context.Context, e store.Event) (store.Event, error) {
	e.At = stamp(e.At)
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "INSERT INTO events (namespace, app, kind, message, by_name, at) VALUES (?, ?, ?, ?, ?, ?)",
			e.Namespace, e.App, e.Kind, e.Message, e.By, e.At.UnixNano())
		if violated(err) == foreignKey {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		e.ID, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return store.Event{}, fmt.Errorf("event of app %q: %w", e.Namespace+"/"+e.App, err)
	}
	return e, nil
}

// ListEvents returns every event when limit <= 0, and ErrNotFound for an
// app that does not exist.
func (s *Store) ListEvents(ctx context.Context, namespace, app string, limit int) ([]store.Event, error) {
	if limit <= 0 {
		limit = math.MaxInt
	}
	var list []store.Event
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		list, err = queryAll(ctx, tx, scanEvent, `SELECT id, namespace, app, kind, message, by_name, at
			FROM events WHERE namespace = ? AND app = ? ORDER BY at DESC, id DESC LIMIT ?`, namespace, app, limit)
		if err != nil || len(list) > 0 {
			return err
		}
		return appMustExist(ctx, tx, namespace, app)
	})
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return list, nil
}

func scanEvent(r scanner) (store.Event, error) {
	var e store.Event
	var at int64
	err := r.Scan(&e.ID, &e.Namespace, &e.App, &e.Kind, &e.Message, &e.By, &at)
	e.At = fromNanos(at)
	return e, err
}
