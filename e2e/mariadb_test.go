package e2e

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	_ "github.com/go-sql-driver/mysql"

	"github.com/upscalehq/upscale/e2e/rig"
)

// The whole control plane on MariaDB: the server with --db mysql://...
func TestServerOnMariaDB(t *testing.T) {
	dsn := os.Getenv("UPSCALE_TEST_MYSQL_DSN")
	if dsn == "" {
		if os.Getenv("UPSCALE_REQUIRE_MYSQL") == "1" {
			t.Fatal("UPSCALE_TEST_MYSQL_DSN is not set (make test sets it from scripts/test-mariadb.sh)")
		}
		t.Skip("UPSCALE_TEST_MYSQL_DSN not set")
	}
	b := make([]byte, 4)
	rand.Read(b)
	name := "upscale_test_e2e_" + hex.EncodeToString(b)
	base := strings.TrimPrefix(dsn, "mysql://")
	db, err := sql.Open("mysql", base)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Exec("DROP DATABASE " + name) })
	target := strings.TrimSuffix(dsn, "/") + "/" + name

	srv := rig.StartWithAgent(t, bin, "--db", target)
	me := rig.NewKey(t, "me")
	if _, errs, code := srv.Local("keys", "add", "--admin", "--name", "me", "--public", me.Public, "--db", target); code != 0 {
		t.Fatal(errs)
	}
	mustSSH(t, srv, me, "", "namespace", "create", "acme")
	mustSSH(t, srv, me, "", "app", "create", "acme/web")
	dir := rig.Repo(t, helloApp(t, "on mariadb", "runtime: python\n"))
	if _, errs, code := srv.Git(me, dir, "push", srv.Remote("acme/web"), "master"); code != 0 || !strings.Contains(errs, "=====> Application deployed") {
		t.Fatalf("push: exit %d\n%s\n%s", code, errs, srv.Log())
	}
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM " + name + ".pushes").Scan(&n); err != nil || n != 1 {
		t.Fatalf("pushes in MariaDB: %d, %v", n, err)
	}
	if code, body, err := srv.Get("acme/web", "/"); err != nil || code != 200 || body != "on mariadb\n" {
		t.Fatalf("app on MariaDB answers %d %q %v", code, body, err)
	}
	if !strings.Contains(srv.Log(), "store=mysql") {
		t.Fatalf("server log does not name the store:\n%s", srv.Log())
	}
}
