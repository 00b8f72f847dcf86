package sqlstore

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/go-sql-driver/mysql"
)

const dsnForms = "want sqlite:PATH or mysql://USER:PASS@tcp(HOST:PORT)/DBNAME"

// schemePattern is what may be echoed back as a scheme: a user who forgot
// the scheme may have typed USER:PASS first, and a user name is all of that
// the pattern lets through.
var schemePattern = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]{0,31}$`)

// parseDSN turns Open's dsn into a driver name and that driver's data
// source. Its errors are one line and never contain the DSN past the scheme,
// which is where a password would be.
func parseDSN(dsn, dataDir string) (driver, source string, err error) {
	if dsn == "" {
		if dataDir == "" {
			return "", "", errors.New("no database: give a data directory or a DSN (" + dsnForms + ")")
		}
		return sqliteSource(filepath.Join(dataDir, "upscale.db"))
	}
	scheme, rest, ok := strings.Cut(dsn, ":")
	switch {
	case !ok:
		return "", "", errors.New("database DSN has no scheme: " + dsnForms)
	case scheme == "sqlite":
		if rest == "" {
			return "", "", errors.New("sqlite DSN has no path: want sqlite:PATH")
		}
		return sqliteSource(rest)
	case scheme == "mysql":
		return mysqlSource(rest)
	case schemePattern.MatchString(scheme):
		return "", "", fmt.Errorf("unsupported database DSN scheme %q: %s", scheme, dsnForms)
	default:
		return "", "", errors.New("database DSN has no valid scheme: " + dsnForms)
	}
}

func sqliteSource(path string) (string, string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", "", fmt.Errorf("sqlite path: %w", err)
	}
	// A file: URI, so that a path holding '?' or '#' stays a path.
	escaped := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(abs)
	// No journal_mode here: see useWAL.
	return "sqlite", "file:" + escaped + "?_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_txlock=immediate", nil
}

func mysqlSource(rest string) (string, string, error) {
	const form = "want mysql://USER:PASS@tcp(HOST:PORT)/DBNAME[?PARAM=VALUE&...]"
	after, ok := strings.CutPrefix(rest, "//")
	if !ok {
		return "", "", errors.New("mysql DSN must start with mysql://: " + form)
	}
	cfg, err := mysql.ParseDSN(after)
	if err != nil {
		// The driver's message may quote pieces of the DSN; say what we want instead.
		return "", "", errors.New("invalid mysql DSN: " + form)
	}
	if cfg.DBName == "" {
		return "", "", errors.New("mysql DSN names no database: " + form)
	}
	// UPDATE must report the rows it matched, not the ones it changed, for
	// "no such row" to be told from "already so".
	cfg.ClientFoundRows = true
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	// A non-strict server would silently cut an over-long name, and two cut
	// names could then collide.
	if _, set := cfg.Params["sql_mode"]; !set {
		cfg.Params["sql_mode"] = "'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'"
	}
	return "mysql", cfg.FormatDSN(), nil
}
