package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/upscalehq/upscale/store"
)

const volumeColumns = "namespace, name, size, replicas, bricks, created_at"

func scanVolume(r scanner) (store.Volume, error) {
	var v store.Volume
	var bricks string
	var at int64
	if err := r.Scan(&v.Namespace, &v.Name, &v.Size, &v.Replicas, &bricks, &at); err != nil {
		return v, err
	}
	v.CreatedAt = fromNanos(at)
	if err := json.Unmarshal([]byte(bricks), &v.Bricks); err != nil {
		return v, fmt.Errorf("volume %s/%s: bricks: %w", v.Namespace, v.Name, err)
	}
	return v, nil
}

const attachmentColumns = "namespace, volume, app, path, read_only, created_at"

func scanAttachment(r scanner) (store.Attachment, error) {
	var a store.Attachment
	var p []byte
	var at int64
	err := r.Scan(&a.Namespace, &a.Volume, &a.App, &p, &a.ReadOnly, &at)
	a.Path, a.CreatedAt = string(p), fromNanos(at)
	return a, err
}

func checkVolume(v store.Volume) error {
	if v.Size < 1 {
		return fmt.Errorf("size %d: want at least 1 byte", v.Size)
	}
	if v.Replicas < 1 || v.Replicas != len(v.Bricks) {
		return fmt.Errorf("%d replicas on %d bricks: want one brick per replica, at least one", v.Replicas, len(v.Bricks))
	}
	hosts := map[string]bool{}
	for _, b := range v.Bricks {
		if b.Host == "" || b.Path == "" {
			return errors.New("a brick needs a host and a path")
		}
		if hosts[b.Host] {
			return fmt.Errorf("two bricks on host %s", b.Host)
		}
		hosts[b.Host] = true
	}
	return nil
}

// CreateVolume counts under the namespace's row lock on MySQL, as
// CreateAppWithin does (SQLite serializes writers anyway).
func (s *Store) CreateVolume(ctx context.Context, v store.Volume, maxBytes int64) (store.Volume, error) {
	v.CreatedAt = stamp(v.CreatedAt)
	v.Attachments = nil
	label := fmt.Sprintf("volume %q", v.Namespace+"/"+v.Name)
	if err := checkVolume(v); err != nil {
		return store.Volume{}, fmt.Errorf("%s: %w", label, err)
	}
	bricks, err := json.Marshal(v.Bricks)
	if err != nil {
		return store.Volume{}, err
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		query := "SELECT 1 FROM namespaces WHERE name = ?"
		if s.driver == "mysql" {
			query += " FOR UPDATE"
		}
		var one int
		switch err := tx.QueryRowContext(ctx, query, v.Namespace).Scan(&one); {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("namespace %q: %w", v.Namespace, store.ErrNotFound)
		case err != nil:
			return err
		}
		if maxBytes > 0 {
			var used int64
			if err := tx.QueryRowContext(ctx, "SELECT COALESCE(SUM(size), 0) FROM volumes WHERE namespace = ?", v.Namespace).Scan(&used); err != nil {
				return err
			}
			if used+v.Size > maxBytes {
				return fmt.Errorf("namespace %q has %d of its %d bytes of volumes, %d more asked: %w", v.Namespace, used, maxBytes, v.Size, store.ErrOverQuota)
			}
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO volumes ("+volumeColumns+") VALUES (?, ?, ?, ?, ?, ?)",
			v.Namespace, v.Name, v.Size, v.Replicas, string(bricks), v.CreatedAt.UnixNano())
		switch violated(err) {
		case uniqueKey:
			return store.ErrConflict
		case foreignKey:
			return fmt.Errorf("namespace %q: %w", v.Namespace, store.ErrNotFound)
		}
		return err
	})
	if err != nil {
		return store.Volume{}, fmt.Errorf("%s: %w", label, err)
	}
	return v, nil
}

func (s *Store) GetVolume(ctx context.Context, namespace, name string) (store.Volume, error) {
	var v store.Volume
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		if v, err = scanVolume(tx.QueryRowContext(ctx, "SELECT "+volumeColumns+" FROM volumes WHERE namespace = ? AND name = ?", namespace, name)); err != nil {
			return notFound(err)
		}
		v.Attachments, err = queryAll(ctx, tx, scanAttachment,
			"SELECT "+attachmentColumns+" FROM volume_attachments WHERE namespace = ? AND volume = ? ORDER BY app", namespace, name)
		return err
	})
	if err != nil {
		return store.Volume{}, fmt.Errorf("volume %q: %w", namespace+"/"+name, err)
	}
	return v, nil
}

func (s *Store) ListVolumes(ctx context.Context, namespace string) ([]store.Volume, error) {
	var vs []store.Volume
	err := s.read(ctx, func(tx *sql.Tx) error {
		where, args := "", []any{}
		if namespace != "" {
			if err := namespaceMustExist(ctx, tx, namespace); err != nil {
				return err
			}
			where, args = " WHERE namespace = ?", []any{namespace}
		}
		var err error
		if vs, err = queryAll(ctx, tx, scanVolume, "SELECT "+volumeColumns+" FROM volumes"+where+" ORDER BY namespace, name", args...); err != nil {
			return err
		}
		as, err := queryAll(ctx, tx, scanAttachment, "SELECT "+attachmentColumns+" FROM volume_attachments"+where+" ORDER BY app", args...)
		if err != nil {
			return err
		}
		byVolume := map[[2]string][]store.Attachment{}
		for _, a := range as {
			k := [2]string{a.Namespace, a.Volume}
			byVolume[k] = append(byVolume[k], a)
		}
		for i := range vs {
			vs[i].Attachments = byVolume[[2]string{vs[i].Namespace, vs[i].Name}]
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	return vs, nil
}

func (s *Store) DeleteVolume(ctx context.Context, namespace, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		apps, err := queryAll(ctx, tx, func(r scanner) (string, error) {
			var a string
			return a, r.Scan(&a)
		}, "SELECT app FROM volume_attachments WHERE namespace = ? AND volume = ? ORDER BY app", namespace, name)
		if err != nil {
			return err
		}
		if len(apps) > 0 {
			return fmt.Errorf("attached to %s: %w", strings.Join(apps, ", "), store.ErrNotEmpty)
		}
		n, err := changed(tx.ExecContext(ctx, "DELETE FROM volumes WHERE namespace = ? AND name = ?", namespace, name))
		switch {
		case violated(err) == foreignKey: // attached since the look (MySQL)
			return fmt.Errorf("attached to an app: %w", store.ErrNotEmpty)
		case err == nil && n == 0:
			return store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("volume %q: %w", namespace+"/"+name, err)
	}
	return nil
}

func (s *Store) AttachVolume(ctx context.Context, a store.Attachment) (store.Attachment, error) {
	a.CreatedAt = stamp(a.CreatedAt)
	label := fmt.Sprintf("volume %q", a.Namespace+"/"+a.Volume)
	if !path.IsAbs(a.Path) || len(a.Path) > 1024 {
		return store.Attachment{}, fmt.Errorf("%s: path %q: want an absolute path of at most 1024 bytes", label, a.Path)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := appMustExist(ctx, tx, a.Namespace, a.App); err != nil {
			return err
		}
		ok, err := exists(ctx, tx, "SELECT 1 FROM volumes WHERE namespace = ? AND name = ?", a.Namespace, a.Volume)
		if err != nil {
			return err
		}
		if !ok {
			return store.ErrNotFound
		}
		var other string
		err = tx.QueryRowContext(ctx, "SELECT volume FROM volume_attachments WHERE namespace = ? AND app = ? AND (volume = ? OR path = ?)",
			a.Namespace, a.App, a.Volume, []byte(a.Path)).Scan(&other)
		switch {
		case err == nil && other == a.Volume:
			return conflict("already attached to " + a.Namespace + "/" + a.App)
		case err == nil:
			return conflict(fmt.Sprintf("%s holds volume %s at %s already", a.Namespace+"/"+a.App, other, a.Path))
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO volume_attachments ("+attachmentColumns+") VALUES (?, ?, ?, ?, ?, ?)",
			a.Namespace, a.Volume, a.App, []byte(a.Path), a.ReadOnly, a.CreatedAt.UnixNano())
		switch violated(err) {
		case uniqueKey: // attached at once by another caller (MySQL)
			return conflict("attached to " + a.Namespace + "/" + a.App + " at once by another change")
		case foreignKey: // the app or the volume went since (MySQL)
			return store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return store.Attachment{}, fmt.Errorf("%s: %w", label, err)
	}
	return a, nil
}

func (s *Store) DetachVolume(ctx context.Context, namespace, app, volume string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		n, err := changed(tx.ExecContext(ctx, "DELETE FROM volume_attachments WHERE namespace = ? AND app = ? AND volume = ?", namespace, app, volume))
		if err == nil && n == 0 {
			return store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("volume %q of app %q: %w", namespace+"/"+volume, namespace+"/"+app, err)
	}
	return nil
}

func (s *Store) AppVolumes(ctx context.Context, namespace, app string) ([]store.Attachment, error) {
	var as []store.Attachment
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		if err := appMustExist(ctx, tx, namespace, app); err != nil {
			return err
		}
		as, err = queryAll(ctx, tx, scanAttachment, "SELECT "+attachmentColumns+" FROM volume_attachments WHERE namespace = ? AND app = ? ORDER BY path", namespace, app)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("volumes of app %q: %w", namespace+"/"+app, err)
	}
	return as, nil
}
