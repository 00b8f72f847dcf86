package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"unicode/utf8"
)

// maxConfigValue is the longest config value the store takes, in bytes; the
// MySQL column (MEDIUMTEXT) holds far more, but no environment needs it.
const maxConfigValue = 64 << 10

// SetConfig locks the app (see releases.go) so that two calls on one app
// run one after the other: each returns the vars as its own change left
// them, and DeleteApp waits for it. Every var is a row, so a call rewrites
// the vars it names and no others.
func (s *Store) SetConfig(ctx context.Context, namespace, app string, set map[string]string, unset []string) (map[string]string, error) {
	if err := checkConfig(set, unset); err != nil {
		return nil, fmt.Errorf("set config of app %q: %w", namespace+"/"+app, err)
	}
	// Set, then unset: a name in both ends up unset. Sorted, so that two
	// writers on MySQL take row locks in one order.
	names := slices.Sorted(maps.Keys(set))
	gone := map[string]bool{}
	for _, name := range unset {
		gone[name] = true
	}
	var vars map[string]string
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := s.lockApp(ctx, tx, namespace, app); err != nil {
			return err
		}
		for _, name := range slices.Concat(names, unset) {
			if _, err := tx.ExecContext(ctx, "DELETE FROM config_vars WHERE namespace = ? AND app = ? AND name = ?",
				namespace, app, name); err != nil {
				return err
			}
		}
		for _, name := range names {
			if gone[name] {
				continue
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO config_vars (namespace, app, name, value) VALUES (?, ?, ?, ?)",
				namespace, app, name, set[name]); err != nil {
				return fmt.Errorf("config var %q: %w", name, err)
			}
		}
		var err error
		vars, err = configOf(ctx, tx, namespace, app)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return vars, nil
}

// checkConfig refuses what one engine could store and the other not: text
// that is not UTF-8 (MySQL's utf8mb4 columns refuse it, SQLite keeps the
// bytes), and values over maxConfigValue.
func checkConfig(set map[string]string, unset []string) error {
	for _, name := range slices.Sorted(maps.Keys(set)) {
		switch value := set[name]; {
		case !utf8.ValidString(name):
			return fmt.Errorf("config var %q: name is not valid UTF-8", name)
		case !utf8.ValidString(value):
			return fmt.Errorf("config var %q: value is not valid UTF-8", name)
		case len(value) > maxConfigValue:
			return fmt.Errorf("config var %q: value is %d bytes, more than %d", name, len(value), maxConfigValue)
		}
	}
	for _, name := range unset {
		if !utf8.ValidString(name) {
			return fmt.Errorf("config var %q: name is not valid UTF-8", name)
		}
	}
	return nil
}

func (s *Store) GetConfig(ctx context.Context, namespace, app string) (map[string]string, error) {
	var vars map[string]string
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		vars, err = configOf(ctx, tx, namespace, app)
		if err != nil || vars != nil {
			return err
		}
		return appMustExist(ctx, tx, namespace, app)
	})
	if err != nil {
		return nil, fmt.Errorf("get config: %w", err)
	}
	return vars, nil
}

// configOf is the app's vars, nil when it has none.
func configOf(ctx context.Context, tx *sql.Tx, namespace, app string) (map[string]string, error) {
	type configVar struct{ name, value string }
	list, err := queryAll(ctx, tx, func(r scanner) (v configVar, err error) {
		err = r.Scan(&v.name, &v.value)
		return v, err
	}, "SELECT name, value FROM config_vars WHERE namespace = ? AND app = ?", namespace, app)
	if err != nil || len(list) == 0 {
		return nil, err
	}
	vars := make(map[string]string, len(list))
	for _, v := range list {
		vars[v.name] = v.value
	}
	return vars, nil
}

// SetFormation stores the formation as JSON, as CreateRelease does a
// release's config: the store never queries into it.
func (s *Store) SetFormation(ctx context.Context, namespace, app string, formation map[string]int) error {
	var text []byte
	for _, process := range slices.Sorted(maps.Keys(formation)) {
		if n := formation[process]; n < 0 {
			return fmt.Errorf("set formation of app %q: process %q: %d instances, want 0 or more", namespace+"/"+app, process, n)
		}
	}
	if len(formation) > 0 {
		var err error
		if text, err = json.Marshal(formation); err != nil {
			return fmt.Errorf("set formation of app %q: %w", namespace+"/"+app, err)
		}
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := s.lockApp(ctx, tx, namespace, app); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM formations WHERE namespace = ? AND app = ?", namespace, app); err != nil || text == nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO formations (namespace, app, formation) VALUES (?, ?, ?)", namespace, app, string(text))
		return err
	})
	if err != nil {
		return fmt.Errorf("set formation: %w", err)
	}
	return nil
}

func (s *Store) GetFormation(ctx context.Context, namespace, app string) (map[string]int, error) {
	var formation map[string]int
	err := s.read(ctx, func(tx *sql.Tx) error {
		var text string
		err := tx.QueryRowContext(ctx, "SELECT formation FROM formations WHERE namespace = ? AND app = ?", namespace, app).Scan(&text)
		if errors.Is(err, sql.ErrNoRows) {
			return appMustExist(ctx, tx, namespace, app)
		}
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(text), &formation); err != nil {
			return fmt.Errorf("app %q: formation: %w", namespace+"/"+app, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get formation: %w", err)
	}
	return formation, nil
}
