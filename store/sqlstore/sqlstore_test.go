package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/store"
	"github.com/upscalehq/upscale/store/storetest"
)

// engine makes fresh databases of one kind.
type engine struct {
	driver string
	// newDSN returns the DSN of a new, empty database that goes away when t ends.
	newDSN func(t *testing.T) string
}

func sqliteEngine() engine {
	return engine{driver: "sqlite", newDSN: func(t *testing.T) string {
		return "sqlite:" + filepath.Join(t.TempDir(), "upscale.db")
	}}
}

// mysqlEngine creates a database upscale_test_RANDOM per newDSN on the
// server UPSCALE_TEST_MYSQL_DSN names (scripts/test-mariadb.sh prints one).
func mysqlEngine(t *testing.T) engine {
	dsn := os.Getenv("UPSCALE_TEST_MYSQL_DSN")
	if dsn == "" {
		if os.Getenv("UPSCALE_REQUIRE_MYSQL") == "1" {
			t.Fatal("UPSCALE_REQUIRE_MYSQL=1 but UPSCALE_TEST_MYSQL_DSN is unset; run with UPSCALE_TEST_MYSQL_DSN=$(scripts/test-mariadb.sh)")
		}
		t.Skip("UPSCALE_TEST_MYSQL_DSN is unset; UPSCALE_TEST_MYSQL_DSN=$(scripts/test-mariadb.sh) tests MariaDB too")
	}
	rest, ok := strings.CutPrefix(dsn, "mysql://")
	if !ok {
		t.Fatal("UPSCALE_TEST_MYSQL_DSN does not start with mysql://")
	}
	cfg, err := mysql.ParseDSN(rest)
	if err != nil {
		t.Fatalf("UPSCALE_TEST_MYSQL_DSN: %v", err)
	}
	cfg.DBName = ""
	server, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return engine{driver: "mysql", newDSN: func(t *testing.T) string {
		name := "upscale_test_" + strings.ToLower(rand.Text()[:12])
		if _, err := server.ExecContext(t.Context(), "CREATE DATABASE "+name); err != nil {
			t.Fatal(err)
		}
		// Registered before the store's Close, so it runs after it.
		t.Cleanup(func() {
			if _, err := server.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name); err != nil {
				t.Errorf("drop test database: %v", err)
			}
		})
		c := cfg.Clone()
		c.DBName = name
		return "mysql://" + c.FormatDSN()
	}}
}

func TestSQLite(t *testing.T) { testEngine(t, sqliteEngine()) }

func TestMySQL(t *testing.T) { testEngine(t, mysqlEngine(t)) }

func testEngine(t *testing.T, e engine) {
	t.Run("Store", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store { return open(t, e.newDSN(t)) })
	})
	t.Run("MigrateTwice", func(t *testing.T) {
		dsn := e.newDSN(t)
		first := open(t, dsn)
		must(first.CreateNamespace(t.Context(), "acme"))(t)
		first.Close()
		second := open(t, dsn)
		checkMigrations(t, second)
		if ns := must(second.GetNamespace(t.Context(), "acme"))(t); ns.Name != "acme" {
			t.Errorf("reopened store lost the namespace: %+v", ns)
		}
	})
	t.Run("MigrateFromVersion1", func(t *testing.T) {
		testMigrateFromVersion1(t, e.newDSN(t))
	})
	t.Run("MigrateFromVersion2", func(t *testing.T) {
		testMigrateFromVersion2(t, e.newDSN(t))
	})
	t.Run("MigrateFromVersion4", func(t *testing.T) {
		testMigrateFromVersion4(t, e.newDSN(t))
	})
	t.Run("HostChecks", func(t *testing.T) {
		testHostChecks(t, open(t, e.newDSN(t)))
	})
	if e.driver == "mysql" {
		for _, tc := range []struct {
			name    string
			version int // the migration
			unrun   int // how many of its last statements did not run
		}{
			// 0002 ends with an ALTER that cannot run twice.
			{"MigrationFailedHalfway/0002", 2, 1},
			// Every statement ran, and the process died before it
			// recorded the migration.
			{"MigrationUnrecorded/0003", 3, 0},
			// 0005 changes the key last.
			{"MigrationFailedHalfway/0005", 5, 1},
			{"MigrationUnrecorded/0005", 5, 0},
		} {
			t.Run(tc.name, func(t *testing.T) {
				testMigrationFailedHalfway(t, e.newDSN(t), tc.version, tc.unrun)
			})
		}
	}
	t.Run("ConcurrentOpen", func(t *testing.T) {
		dsn := e.newDSN(t)
		stores := make([]*Store, 5)
		var wg sync.WaitGroup
		for i := range stores {
			wg.Go(func() {
				s, err := Open(t.Context(), dsn, "")
				if err != nil {
					t.Errorf("open %d: %v", i, err)
					return
				}
				t.Cleanup(func() { s.Close() })
				stores[i] = s
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		checkMigrations(t, stores[0])
		for i, s := range stores {
			must(s.CreateNamespace(t.Context(), fmt.Sprintf("ns-%d", i)))(t)
		}
		if list := must(stores[0].ListNamespaces(t.Context()))(t); len(list) != len(stores) {
			t.Errorf("%d namespaces, want %d", len(list), len(stores))
		}
	})
	t.Run("TwoStoresWriting", func(t *testing.T) {
		// Like the server and the admin CLI on one database.
		dsn := e.newDSN(t)
		stores := []*Store{open(t, dsn), open(t, dsn)}
		const each = 20
		var wg sync.WaitGroup
		for si, s := range stores {
			for i := range each {
				wg.Go(func() {
					name := fmt.Sprintf("s%d-%d", si, i)
					if _, err := s.CreateNamespace(t.Context(), name); err != nil {
						t.Errorf("store %d: %v", si, err)
						return
					}
					if _, err := s.CreateApp(t.Context(), name, "web"); err != nil {
						t.Errorf("store %d: %v", si, err)
					}
				})
			}
		}
		wg.Wait()
		for si, s := range stores {
			if list := must(s.ListApps(t.Context(), ""))(t); len(list) != 2*each {
				t.Errorf("store %d sees %d apps, want %d", si, len(list), 2*each)
			}
		}
	})
}

// testMigrateFromVersion1 fills a database the way the first release of
// the schema left it and checks that today's Open brings it up to date
// with every row intact and usable.
func testMigrateFromVersion1(t *testing.T, dsn string) {
	ctx := t.Context()
	old, err := openSchema(ctx, dsn, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	if v := schemaVersion(t, old); v != 1 {
		t.Fatalf("schema version %d, want 1", v)
	}
	if _, err := old.db.ExecContext(ctx, "SELECT COUNT(*) FROM releases"); err == nil {
		t.Fatal("a version 1 schema has a releases table")
	}
	must(old.CreateNamespace(ctx, "acme"))(t)
	app := must(old.CreateApp(ctx, "acme", "web"))(t)
	key := must(old.AddKey(ctx, store.Key{Fingerprint: "SHA256:ci", Name: "ci", Role: keys.RoleDeploy,
		Namespace: "acme", App: "web", Type: "ssh-ed25519", PublicKey: "ssh-ed25519 AAAA ci", AddedBy: "local"}))(t)
	push := must(old.RecordPush(ctx, store.Push{Namespace: "acme", App: "web", Ref: "refs/heads/master",
		OldCommit: strings.Repeat("0", 40), NewCommit: strings.Repeat("a", 40), Subject: "first", KeyName: "ci", KeyFP: "SHA256:ci"}))(t)
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	s := open(t, dsn)
	checkMigrations(t, s)
	got := must(s.GetApp(ctx, "acme", "web"))(t)
	if got != app || got.Stopped {
		t.Errorf("app after migration: %+v, want %+v, running", got, app)
	}
	if got := must(s.KeyByFingerprint(ctx, key.Fingerprint))(t); got != key {
		t.Errorf("key after migration: %+v, want %+v", got, key)
	}
	if got := must(s.ListPushes(ctx, "acme", "web", 0))(t); len(got) != 1 || got[0] != push {
		t.Errorf("pushes after migration: %+v, want %+v", got, push)
	}

	// The old app takes the new columns and tables, and cascades to them.
	must(0, s.SetStopped(ctx, "acme", "web", true))(t)
	if !must(s.GetApp(ctx, "acme", "web"))(t).Stopped {
		t.Error("SetStopped did not stick")
	}
	r := must(s.CreateRelease(ctx, store.Release{Namespace: "acme", App: "web", Commit: push.NewCommit}))(t)
	if r.Version != 1 {
		t.Errorf("first release is v%d", r.Version)
	}
	must(0, s.FinishBuild(ctx, "acme", "web", r.Version, "a", "d", 1))(t)
	must(0, s.Activate(ctx, "acme", "web", r.Version, []store.Instance{{Name: "web-1", Host: "h1"}}))(t)
	must(0, s.DeleteApp(ctx, "acme", "web"))(t)
	if list := must(s.ListInstances(ctx, "", ""))(t); len(list) != 0 {
		t.Errorf("instances after DeleteApp: %+v", list)
	}
}

// testMigrationFailedHalfway runs migration version on MySQL after all of
// its statements but the last unrun have already run, as after a failure:
// MySQL commits DDL statement by statement, and migrate.go asks that such a
// migration can be finished by running it again.
func testMigrationFailedHalfway(t *testing.T, dsn string, version, unrun int) {
	ctx := t.Context()
	old, err := openSchema(ctx, dsn, "", version-1)
	if err != nil {
		t.Fatal(err)
	}
	m := must(loadMigrations(old.driver))(t)[version-1]
	for _, stmt := range m.stmts[:len(m.stmts)-unrun] {
		if _, err := old.db.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	old.Close()
	s := open(t, dsn)
	checkMigrations(t, s)
	must(s.CreateNamespace(ctx, "acme"))(t)
	must(s.CreateApp(ctx, "acme", "web"))(t)
	must(s.CreateRelease(ctx, store.Release{Namespace: "acme", App: "web"}))(t)
	must(s.AddHost(ctx, store.Host{Name: "h1", Address: "10.0.0.1", Subnet: "10.77.1.0/24"}))(t)
}

// testMigrateFromVersion2 fills a database the way the schema with releases
// and instances, and no hosts, left it, with instances on hosts that were
// never registered, and checks that today's Open keeps every row, and that
// those instances hold back RemoveHost once their host is added.
func testMigrateFromVersion2(t *testing.T, dsn string) {
	ctx := t.Context()
	old, err := openSchema(ctx, dsn, "", 2)
	if err != nil {
		t.Fatal(err)
	}
	if v := schemaVersion(t, old); v != 2 {
		t.Fatalf("schema version %d, want 2", v)
	}
	if _, err := old.db.ExecContext(ctx, "SELECT COUNT(*) FROM hosts"); err == nil {
		t.Fatal("a version 2 schema has a hosts table")
	}
	must(old.CreateNamespace(ctx, "acme"))(t)
	must(old.CreateApp(ctx, "acme", "web"))(t)
	must(old.CreateApp(ctx, "acme", "api"))(t)
	must(0, old.SetStopped(ctx, "acme", "api", true))(t)
	key := must(old.AddKey(ctx, store.Key{Fingerprint: "SHA256:ci", Name: "ci", Role: keys.RoleDeploy,
		Namespace: "acme", App: "web", Type: "ssh-ed25519", PublicKey: "ssh-ed25519 AAAA ci", AddedBy: "local"}))(t)
	push := must(old.RecordPush(ctx, store.Push{Namespace: "acme", App: "web", Ref: "refs/heads/master",
		OldCommit: strings.Repeat("0", 40), NewCommit: strings.Repeat("a", 40), Subject: "first", KeyName: "ci", KeyFP: "SHA256:ci"}))(t)
	r := must(old.CreateRelease(ctx, store.Release{Namespace: "acme", App: "web", Commit: push.NewCommit,
		Config: store.ReleaseConfig{Start: "./run", Instances: 2}}))(t)
	must(0, old.FinishBuild(ctx, "acme", "web", r.Version, "acme.web.v1", "d", 1))(t)
	// Today's Activate and lists read columns version 2 lacks: what its
	// Activate wrote, written by hand.
	at := time.Unix(1700000000, 5).UTC()
	instances := []store.Instance{
		{Name: "web-1", Namespace: "acme", App: "web", Release: r.Version, Host: "h1", Addr: "10.77.1.5:8080", CreatedAt: at},
		{Name: "web-2", Namespace: "acme", App: "web", Release: r.Version, Host: "h2", Addr: "10.77.2.5:8080", CreatedAt: at},
	}
	if _, err := old.db.ExecContext(ctx, "UPDATE releases SET status = ? WHERE namespace = 'acme' AND app = 'web'", store.ReleaseLive); err != nil {
		t.Fatal(err)
	}
	for _, in := range instances {
		if _, err := old.db.ExecContext(ctx, `INSERT INTO instances (name, namespace, app, release_version, host, addr, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, in.Name, in.Namespace, in.App, in.Release, in.Host, in.Addr, at.UnixNano()); err != nil {
			t.Fatal(err)
		}
	}
	// ListApps reads the HTTPS policy columns version 2 lacks: the apps as
	// it would list them, read by hand, with the policy's defaults.
	var apps []store.App
	rows, err := old.db.QueryContext(ctx, "SELECT namespace, name, deploy_branch, stopped, created_at FROM apps ORDER BY namespace, name")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var a store.App
		var at int64
		if err := rows.Scan(&a.Namespace, &a.Name, &a.DeployBranch, &a.Stopped, &at); err != nil {
			t.Fatal(err)
		}
		a.CreatedAt = fromNanos(at)
		if a.Name == "web" {
			// What runs of it: its live release and the instances above.
			a.LiveVersion, a.Instances = r.Version, len(instances)
		}
		apps = append(apps, a)
	}
	rows.Close()
	r.Status, r.Artifact, r.Digest, r.Size = store.ReleaseLive, "acme.web.v1", "d", 1
	releases := []store.Release{r}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	s := open(t, dsn)
	checkMigrations(t, s)
	if got := must(s.ListApps(ctx, ""))(t); !reflect.DeepEqual(got, apps) {
		t.Errorf("apps after migration: %+v, want %+v", got, apps)
	}
	if got := must(s.KeyByFingerprint(ctx, key.Fingerprint))(t); got != key {
		t.Errorf("key after migration: %+v, want %+v", got, key)
	}
	if got := must(s.ListPushes(ctx, "acme", "web", 0))(t); len(got) != 1 || got[0] != push {
		t.Errorf("pushes after migration: %+v, want %+v", got, push)
	}
	if got := must(s.ListReleases(ctx, "acme", "web", 0))(t); !reflect.DeepEqual(got, releases) {
		t.Errorf("releases after migration: %+v, want %+v", got, releases)
	}
	if got := must(s.ListInstances(ctx, "", ""))(t); !reflect.DeepEqual(got, instances) {
		t.Errorf("instances after migration: %+v, want %+v", got, instances)
	}
	if list := must(s.ListHosts(ctx))(t); len(list) != 0 {
		t.Errorf("hosts after migration: %+v", list)
	}

	// The hosts the old instances name can be added, and are held back
	// by them; a host the instances leave can go.
	for i, name := range []string{"h1", "h2", "h3"} {
		must(s.AddHost(ctx, store.Host{Name: name, Address: fmt.Sprintf("10.0.0.%d", i+1), Subnet: fmt.Sprintf("10.77.%d.0/24", i+1)}))(t)
	}
	if err := s.RemoveHost(ctx, "h1"); !errors.Is(err, store.ErrNotEmpty) {
		t.Errorf("RemoveHost(h1) with web-1 on it: %v, want not empty", err)
	}
	must(0, s.SetInstances(ctx, "acme", "web", []store.Instance{{Name: "web-1", Release: r.Version, Host: "h3"}, instances[1]}))(t)
	must(0, s.RemoveHost(ctx, "h1"))(t)
	if err := s.RemoveHost(ctx, "h2"); !errors.Is(err, store.ErrNotEmpty) {
		t.Errorf("RemoveHost(h2) with web-2 on it: %v, want not empty", err)
	}
	must(0, s.DeleteApp(ctx, "acme", "web"))(t)
	must(0, s.RemoveHost(ctx, "h2"))(t)
	must(0, s.RemoveHost(ctx, "h3"))(t)
}

// testMigrateFromVersion4 fills a database with the custom domains of the
// schema before proofs of ownership, which were routed at once, and checks
// that they stay routed (verified, at their creation) and keep the rule of
// one app per hostname.
func testMigrateFromVersion4(t *testing.T, dsn string) {
	ctx := t.Context()
	old, err := openSchema(ctx, dsn, "", 4)
	if err != nil {
		t.Fatal(err)
	}
	must(old.CreateNamespace(ctx, "acme"))(t)
	for _, app := range []string{"web", "api"} {
		must(old.CreateApp(ctx, "acme", app))(t)
	}
	at := time.Unix(1700000000, 5).UTC()
	if _, err := old.db.ExecContext(ctx, "INSERT INTO domains (hostname, namespace, app, created_at) VALUES (?, ?, ?, ?)",
		"www.example.com", "acme", "web", at.UnixNano()); err != nil {
		t.Fatal(err)
	}
	old.Close()

	s := open(t, dsn)
	checkMigrations(t, s)
	want := []store.Domain{{Hostname: "www.example.com", Namespace: "acme", App: "web", CreatedAt: at, CheckedAt: at, VerifiedAt: at}}
	if got := must(s.ListDomains(ctx, "", ""))(t); !reflect.DeepEqual(got, want) {
		t.Errorf("domains after migration: %+v, want %+v", got, want)
	}
	if _, err := s.AddDomain(ctx, store.Domain{Hostname: "www.example.com", Namespace: "acme", App: "api", Token: "t"}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("another app claiming a migrated domain: %v, want a conflict", err)
	}
}

// testHostChecks shows that the schema itself refuses the hosts AddHost,
// SetHostWeight and SetHostState refuse before they reach it.
func testHostChecks(t *testing.T, s *Store) {
	ctx := t.Context()
	must(s.AddHost(ctx, store.Host{Name: "h1", Address: "10.0.0.1", Subnet: "10.77.1.0/24"}))(t)
	for _, tc := range []struct {
		stmt string
		want violation // noViolation: a check
	}{
		{"UPDATE hosts SET weight = 0", noViolation},
		{"UPDATE hosts SET weight = -1", noViolation},
		{"UPDATE hosts SET state = 'gone'", noViolation},
		{"UPDATE hosts SET state = ''", noViolation},
		{"INSERT INTO hosts SELECT 'h2', address, 'x', weight, state, provider, instance_id, region, host_key, created_at FROM hosts", uniqueKey},
		{"INSERT INTO hosts SELECT 'h2', 'x', subnet, weight, state, provider, instance_id, region, host_key, created_at FROM hosts", uniqueKey},
		{"INSERT INTO hosts SELECT name, 'x', 'y', weight, state, provider, instance_id, region, host_key, created_at FROM hosts", uniqueKey},
	} {
		_, err := s.db.ExecContext(ctx, tc.stmt)
		if err == nil || violated(err) != tc.want {
			t.Errorf("%s: %v (%v), want a refusal (%v)", tc.stmt, err, violated(err), tc.want)
		}
	}
	want := must(s.GetHost(ctx, "h1"))(t)
	if list := must(s.ListHosts(ctx))(t); len(list) != 1 || list[0] != want {
		t.Errorf("hosts %+v, want only %+v", list, want)
	}
}

func schemaVersion(t *testing.T, s *Store) int {
	t.Helper()
	var v int
	if err := s.db.QueryRowContext(t.Context(), "SELECT MAX(version) FROM schema_migrations").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func open(t *testing.T, dsn string) *Store {
	t.Helper()
	s, err := Open(t.Context(), dsn, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// checkMigrations fails t unless every migration is recorded exactly once.
func checkMigrations(t *testing.T, s *Store) {
	t.Helper()
	all := must(loadMigrations(s.driver))(t)
	var n, max int
	if err := s.db.QueryRowContext(t.Context(), "SELECT COUNT(*), MAX(version) FROM schema_migrations").Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if n != len(all) || max != len(all) {
		t.Errorf("schema_migrations has %d rows up to version %d, want %d", n, max, len(all))
	}
}

func TestSQLiteSettings(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "data")
	s, err := Open(t.Context(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory: %v, %v; want mode 0700", fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "upscale.db")); err != nil {
		t.Errorf("database file: %v", err)
	}
	for pragma, want := range map[string]string{"journal_mode": "wal", "foreign_keys": "1", "busy_timeout": "5000"} {
		var got string
		if err := s.db.QueryRowContext(t.Context(), "PRAGMA "+pragma).Scan(&got); err != nil || got != want {
			t.Errorf("PRAGMA %s = %q, %v; want %q", pragma, got, err, want)
		}
	}
}

func TestSQLitePathWithURIChars(t *testing.T) {
	path := filepath.Join(t.TempDir(), "odd?name#1%20.db")
	s := open(t, "sqlite:"+path)
	must(s.CreateNamespace(t.Context(), "acme"))(t)
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at the path given: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct {
		dsn, dataDir string
		want         string
	}{
		{"postgres://upscale:s3cret@db/upscale", "", `unsupported database DSN scheme "postgres"`},
		{"upscale:s3cret@tcp(db:3306)/upscale", "", `unsupported database DSN scheme "upscale"`},
		{"sqlite3:/var/lib/upscale.db", "", `unsupported database DSN scheme "sqlite3"`},
		{"ü:s3cret@x/y", "", "no valid scheme"},
		{"upscale.db", "", "no scheme"},
		{"", "", "no database"},
		{"sqlite:", "", "no path"},
		{"mysql:upscale:s3cret@tcp(db:3306)/upscale", "", "must start with mysql://"},
		{"mysql://upscale:s3cret@tcp(db:3306)", "", "invalid mysql DSN"},
		{"mysql://upscale:s3cret@tcp(db:3306/upscale", "", "invalid mysql DSN"},
		{"mysql://upscale:s3cret@tcp(db:3306)/upscale?parseTime=maybe", "", "invalid mysql DSN"},
		{"mysql://upscale:s3cret@tcp(db:3306)/", "", "names no database"},
	} {
		t.Run(tc.dsn, func(t *testing.T) {
			s, err := Open(t.Context(), tc.dsn, tc.dataDir)
			if err == nil {
				s.Close()
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") || strings.Contains(msg, "s3cret") {
				t.Errorf("error %q: want one line with %q and no password", msg, tc.want)
			}
		})
	}
}

func TestParseMySQLDSN(t *testing.T) {
	for _, tc := range []struct {
		dsn     string
		check   func(c *mysql.Config) bool
		explain string
	}{
		{"mysql://u:p@tcp(db:3306)/upscale", func(c *mysql.Config) bool {
			return c.ClientFoundRows && c.Params["sql_mode"] == "'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'" &&
				c.User == "u" && c.Passwd == "p" && c.Addr == "db:3306" && c.DBName == "upscale"
		}, "clientFoundRows and strict mode added"},
		{"mysql://u:p@tcp(db:3306)/upscale?parseTime=true&sql_mode=ANSI&tls=skip-verify", func(c *mysql.Config) bool {
			return c.ParseTime && c.Params["sql_mode"] == "ANSI" && c.TLSConfig == "skip-verify" && c.ClientFoundRows
		}, "the user's parameters kept"},
		{"mysql://u:p@w@rd@unix(/run/mysqld/mysqld.sock)/upscale", func(c *mysql.Config) bool {
			return c.Passwd == "p@w@rd" && c.Net == "unix" && c.Addr == "/run/mysqld/mysqld.sock"
		}, "unix socket, '@' in the password"},
	} {
		driver, source, err := parseDSN(tc.dsn, "")
		if err != nil || driver != "mysql" {
			t.Fatalf("%s: %q, %v", tc.dsn, driver, err)
		}
		c, err := mysql.ParseDSN(source)
		if err != nil || !tc.check(c) {
			t.Errorf("%s: %s: got %+v, %v", tc.dsn, tc.explain, c, err)
		}
	}
}
