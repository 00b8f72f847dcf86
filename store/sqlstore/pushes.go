package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"math"

	"github.com/upscalehq/upscale/store"
)

// RecordPush sets At to now when it is zero.
func (s *Store) RecordPush(ctx context.Context, p store.Push) (store.Push, error) {
	p.At = stamp(p.At)
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO pushes
			(namespace, app, ref, old_commit, new_commit, subject, key_name, key_fp, at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			p.Namespace, p.App, p.Ref, p.OldCommit, p.NewCommit, p.Subject, p.KeyName, p.KeyFP, p.At.UnixNano())
		if violated(err) == foreignKey {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		p.ID, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return store.Push{}, fmt.Errorf("push to app %q: %w", p.Namespace+"/"+p.App, err)
	}
	return p, nil
}

// ListPushes returns every push when limit <= 0, and ErrNotFound for an app
// that does not exist.
func (s *Store) ListPushes(ctx context.Context, namespace, app string, limit int) ([]store.Push, error) {
	if limit <= 0 {
		limit = math.MaxInt
	}
	var list []store.Push
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		list, err = queryAll(ctx, tx, scanPush, `SELECT id, namespace, app, ref, old_commit, new_commit, subject, key_name, key_fp, at
			FROM pushes WHERE namespace = ? AND app = ? ORDER BY at DESC, id DESC LIMIT ?`, namespace, app, limit)
		if err != nil || len(list) > 0 {
			return err
		}
		return appMustExist(ctx, tx, namespace, app)
	})
	if err != nil {
		return nil, fmt.Errorf("list pushes: %w", err)
	}
	return list, nil
}

func scanPush(r scanner) (store.Push, error) {
	var p store.Push
	var at int64
	err := r.Scan(&p.ID, &p.Namespace, &p.App, &p.Ref, &p.OldCommit, &p.NewCommit, &p.Subject, &p.KeyName, &p.KeyFP, &at)
	p.At = fromNanos(at)
	return p, err
}
