package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// migrations holds one folder per driver, files NNNN_name.sql applied in
// order, each once, recorded in schema_migrations.
//
//go:embed migrations
var migrations embed.FS

type migration struct {
	version int
	name    string
	stmts   []string
}

func loadMigrations(driver string) ([]migration, error) {
	dir := "migrations/" + driver
	entries, err := fs.ReadDir(migrations, dir)
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries { // ReadDir sorts by name, so by version
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v != len(out)+1 || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration %s/%s: want %04d_NAME.sql", dir, e.Name(), len(out)+1)
		}
		text, err := migrations.ReadFile(dir + "/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), stmts: splitSQL(string(text))})
	}
	return out, nil
}

// splitSQL cuts a migration into statements, since neither driver is asked
// to run several in one call. Statements end with ';' at the end of a line;
// whole-line "--" comments are dropped.
func splitSQL(text string) []string {
	var kept []string
	for line := range strings.Lines(text) {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			kept = append(kept, line)
		}
	}
	var stmts []string
	for stmt := range strings.SplitSeq(strings.Join(kept, ""), ";\n") {
		if stmt = strings.TrimSpace(stmt); stmt != "" {
			stmts = append(stmts, strings.TrimSuffix(stmt, ";"))
		}
	}
	return stmts
}

// migrate applies the migrations the database lacks, up to version upTo.
// Two processes may open the same database at once, so the whole
// check-and-apply is serialized: on SQLite by the transaction itself (BEGIN
// IMMEDIATE); on MySQL, where every DDL statement commits on its own, by a
// named lock. That also means a MySQL migration that fails halfway leaves
// its earlier statements applied: keep each MySQL migration to what can be
// re-run by hand.
func (s *Store) migrate(ctx context.Context, upTo int) error {
	all, err := loadMigrations(s.driver)
	if err != nil {
		return err
	}
	conn, err := s.writer.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if s.driver == "mysql" {
		const lock = "CONCAT('upscale_migrate.', DATABASE())"
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK("+lock+", 60)").Scan(&got); err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		if got.Int64 != 1 {
			return fmt.Errorf("migration lock: another process held it for 60 s")
		}
		// The lock belongs to the session, which goes back to the pool.
		defer conn.ExecContext(context.WithoutCancel(ctx), "DO RELEASE_LOCK("+lock+")")
	}

	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    BIGINT NOT NULL PRIMARY KEY,
		applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("schema_migrations: %w", err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&current); err != nil {
		return fmt.Errorf("schema_migrations: %w", err)
	}
	if current > len(all) {
		return fmt.Errorf("schema version %d is newer than this program knows (%d): upgrade upscale", current, len(all))
	}
	for _, m := range all[current:max(current, min(upTo, len(all)))] {
		for _, stmt := range m.stmts {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
			m.version, now().UnixNano()); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
	}
	return tx.Commit()
}
