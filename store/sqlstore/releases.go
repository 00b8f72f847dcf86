package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/upscalehq/upscale/store"
)

// Every method that changes an app's releases or instances first locks the
// app's row (lockApp). On SQLite that is no more than an existence check,
// since write transactions already run one at a time; on MySQL it makes
// them run one at a time per app, which is what makes "highest version plus
// one" and "one live release" hold, and DeleteApp waits for them.

const releaseQuery = `SELECT namespace, app, version, git_commit, subject, author, runtime, config,
	artifact, digest, artifact_size, status, failure, pruned, created_by, created_at FROM releases`

func scanRelease(r scanner) (store.Release, error) {
	var rel store.Release
	var config string
	var at int64
	err := r.Scan(&rel.Namespace, &rel.App, &rel.Version, &rel.Commit, &rel.Subject, &rel.Author, &rel.Runtime, &config,
		&rel.Artifact, &rel.Digest, &rel.Size, &rel.Status, &rel.Failure, &rel.Pruned, &rel.By, &at)
	if err != nil {
		return store.Release{}, err
	}
	rel.CreatedAt = fromNanos(at)
	if err := json.Unmarshal([]byte(config), &rel.Config); err != nil {
		return store.Release{}, fmt.Errorf("%s: config: %w", releaseLabel(rel.Namespace, rel.App, rel.Version), err)
	}
	return rel, nil
}

func releaseLabel(namespace, app string, version int) string {
	return fmt.Sprintf("app %q release v%d", namespace+"/"+app, version)
}

// lockApp fails with ErrNotFound when the app does not exist and otherwise,
// on MySQL, holds its row until the transaction ends (see the top of this
// file).
func (s *Store) lockApp(ctx context.Context, tx *sql.Tx, namespace, app string) error {
	query := "SELECT 1 FROM apps WHERE namespace = ? AND name = ?"
	if s.driver == "mysql" {
		query += " FOR UPDATE"
	}
	ok, err := exists(ctx, tx, query, namespace, app)
	if err == nil && !ok {
		err = fmt.Errorf("app %q: %w", namespace+"/"+app, store.ErrNotFound)
	}
	return err
}

// CreateRelease takes the version under the app's lock rather than
// inserting and retrying on a duplicate key: on MySQL the retry would need
// a new transaction each time (the snapshot keeps showing the old highest
// version) and ten racing callers could run out of retries, while the lock
// just queues them.
func (s *Store) CreateRelease(ctx context.Context, r store.Release) (store.Release, error) {
	config, err := json.Marshal(r.Config)
	if err != nil {
		return store.Release{}, fmt.Errorf("create release of app %q: config: %w", r.Namespace+"/"+r.App, err)
	}
	// What a read will give back: JSON drops an empty Env and replaces
	// invalid UTF-8.
	r.Config = store.ReleaseConfig{}
	if err := json.Unmarshal(config, &r.Config); err != nil {
		return store.Release{}, fmt.Errorf("create release of app %q: config: %w", r.Namespace+"/"+r.App, err)
	}
	r.Status = store.ReleaseBuilding
	r.Artifact, r.Digest, r.Size, r.Failure, r.Pruned = "", "", 0, "", false
	r.CreatedAt = stamp(r.CreatedAt)
	err = s.write(ctx, func(tx *sql.Tx) error {
		if err := s.lockApp(ctx, tx, r.Namespace, r.App); err != nil {
			return err
		}
		// After the lock, this plain read sees every release committed by
		// those that held it before (write transactions on MySQL are READ
		// COMMITTED: each statement reads the latest commits).
		if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) + 1 FROM releases WHERE namespace = ? AND app = ?",
			r.Namespace, r.App).Scan(&r.Version); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO releases
			(namespace, app, version, git_commit, subject, author, runtime, config,
			artifact, digest, artifact_size, status, failure, created_by, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.Namespace, r.App, r.Version, r.Commit, r.Subject, r.Author, r.Runtime, string(config),
			r.Artifact, r.Digest, r.Size, r.Status, r.Failure, r.By, r.CreatedAt.UnixNano())
		return err
	})
	if err != nil {
		return store.Release{}, fmt.Errorf("create release: %w", err)
	}
	return r, nil
}

func (s *Store) FinishBuild(ctx context.Context, namespace, app string, version int, artifact, digest string, size int64) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := s.lockApp(ctx, tx, namespace, app); err != nil {
			return err
		}
		return changeRelease(ctx, tx, namespace, app, version, []store.ReleaseStatus{store.ReleaseBuilding}, true,
			"status = ?, artifact = ?, digest = ?, artifact_size = ?", store.ReleaseBuilt, artifact, digest, size)
	})
	if err != nil {
		return fmt.Errorf("finish build: %w", err)
	}
	return nil
}

func (s *Store) FailRelease(ctx context.Context, namespace, app string, version int, failure string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := s.lockApp(ctx, tx, namespace, app); err != nil {
			return err
		}
		return changeRelease(ctx, tx, namespace, app, version, []store.ReleaseStatus{store.ReleaseBuilding, store.ReleaseBuilt}, true,
			"status = ?, failure = ?", store.ReleaseFailed, failure)
	})
	if err != nil {
		return fmt.Errorf("fail release: %w", err)
	}
	return nil
}

// Activate supersedes the live release before it sets the new one, since
// the schema allows one live release per app after every statement, not
// only at commit. A pruned release has no artifact to start instances of.
func (s *Store) Activate(ctx context.Context, namespace, app string, version int, instances []store.Instance) error {
	list, err := instancesOf(namespace, app, version, instances)
	if err != nil {
		return fmt.Errorf("activate %s: %w", releaseLabel(namespace, app, version), err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		if err := s.lockApp(ctx, tx, namespace, app); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE releases SET status = ? WHERE namespace = ? AND app = ? AND status = ? AND version <> ?",
			store.ReleaseSuperseded, namespace, app, store.ReleaseLive, version); err != nil {
			return err
		}
		if err := changeRelease(ctx, tx, namespace, app, version,
			[]store.ReleaseStatus{store.ReleaseBuilt, store.ReleaseSuperseded, store.ReleaseLive}, false,
			"status = ?", store.ReleaseLive); err != nil {
			return err
		}
		return replaceInstances(ctx, tx, namespace, app, list)
	})
	if err != nil {
		return fmt.Errorf("activate: %w", err)
	}
	return nil
}

// changeRelease sets the columns in set ("col = ?, ...", with args) of a
// release in one of the statuses from, and not pruned unless pruned says
// so. The UPDATE itself checks the release, so the check and the change
// cannot be split even by a caller that forgot lockApp.
func changeRelease(ctx context.Context, tx *sql.Tx, namespace, app string, version int,
	from []store.ReleaseStatus, pruned bool, set string, args ...any) error {
	query := "UPDATE releases SET " + set + " WHERE namespace = ? AND app = ? AND version = ? AND status IN (?" +
		strings.Repeat(", ?", len(from)-1) + ")"
	all := slices.Concat(args, []any{namespace, app, version})
	for _, st := range from {
		all = append(all, st)
	}
	if !pruned {
		query += " AND pruned = ?"
		all = append(all, false)
	}
	n, err := changed(tx.ExecContext(ctx, query, all...))
	if err != nil || n == 1 {
		return err
	}
	var now store.ReleaseStatus
	var isPruned bool
	err = tx.QueryRowContext(ctx, "SELECT status, pruned FROM releases WHERE namespace = ? AND app = ? AND version = ?",
		namespace, app, version).Scan(&now, &isPruned)
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w", releaseLabel(namespace, app, version), notFound(err))
	case slices.Contains(from, now): // so pruned, and !pruned
		return conflict(fmt.Sprintf("%s is pruned: its artifact was deleted", releaseLabel(namespace, app, version)))
	}
	return conflict(fmt.Sprintf("%s is %s, not %s", releaseLabel(namespace, app, version), now, statusList(from)))
}

// statusList is "a", "a or b", "a, b or c".
func statusList(list []store.ReleaseStatus) string {
	var b strings.Builder
	for i, st := range list {
		switch {
		case i == 0:
		case i == len(list)-1:
			b.WriteString(" or ")
		default:
			b.WriteString(", ")
		}
		b.WriteString(string(st))
	}
	return b.String()
}

// conflictError is an ErrConflict whose text says what the conflict is;
// ErrConflict's own text, "already exists", would be wrong for a release in
// the wrong status.
type conflictError string

func conflict(msg string) error { return conflictError(msg) }

func (e conflictError) Error() string { return string(e) }
func (e conflictError) Unwrap() error { return store.ErrConflict }

func (s *Store) GetRelease(ctx context.Context, namespace, app string, version int) (store.Release, error) {
	var r store.Release
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		r, err = scanRelease(tx.QueryRowContext(ctx, releaseQuery+" WHERE namespace = ? AND app = ? AND version = ?",
			namespace, app, version))
		return err
	})
	if err != nil {
		return store.Release{}, fmt.Errorf("%s: %w", releaseLabel(namespace, app, version), notFound(err))
	}
	return r, nil
}

// LiveRelease tells a missing app from an app without a live release in
// the error text only; both are ErrNotFound.
func (s *Store) LiveRelease(ctx context.Context, namespace, app string) (store.Release, error) {
	var r store.Release
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		r, err = scanRelease(tx.QueryRowContext(ctx, releaseQuery+" WHERE namespace = ? AND app = ? AND status = ?",
			namespace, app, store.ReleaseLive))
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if err := appMustExist(ctx, tx, namespace, app); err != nil {
			return err
		}
		return fmt.Errorf("app %q has no live release: %w", namespace+"/"+app, store.ErrNotFound)
	})
	if err != nil {
		return store.Release{}, fmt.Errorf("live release: %w", err)
	}
	return r, nil
}

// ListReleases returns every release when limit <= 0, and ErrNotFound for
// an app that does not exist.
func (s *Store) ListReleases(ctx context.Context, namespace, app string, limit int) ([]store.Release, error) {
	if limit <= 0 {
		limit = math.MaxInt
	}
	var list []store.Release
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		list, err = queryAll(ctx, tx, scanRelease, releaseQuery+" WHERE namespace = ? AND app = ? ORDER BY version DESC LIMIT ?",
			namespace, app, limit)
		if err != nil || len(list) > 0 {
			return err
		}
		return appMustExist(ctx, tx, namespace, app)
	})
	if err != nil {
		return nil, fmt.Errorf("list releases: %w", err)
	}
	return list, nil
}

// PruneRelease keeps everything it knew of the release, the artifact's
// name and digest included, for the history; the deployer no longer finds
// it usable. Instances that still run a release hold it back, as live
// releases do, since restarting one needs the artifact.
func (s *Store) PruneRelease(ctx context.Context, namespace, app string, version int) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := s.lockApp(ctx, tx, namespace, app); err != nil {
			return err
		}
		if err := changeRelease(ctx, tx, namespace, app, version,
			[]store.ReleaseStatus{store.ReleaseBuilt, store.ReleaseSuperseded, store.ReleaseFailed}, true,
			"pruned = ?", true); err != nil {
			return err
		}
		var instances int
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM instances WHERE namespace = ? AND app = ? AND release_version = ?",
			namespace, app, version).Scan(&instances); err != nil {
			return err
		}
		if instances > 0 {
			return conflict(fmt.Sprintf("%s still runs on %d %s", releaseLabel(namespace, app, version),
				instances, plural(instances, "instance", "instances")))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("prune release: %w", err)
	}
	return nil
}
