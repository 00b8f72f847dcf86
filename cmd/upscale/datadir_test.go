package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// A data directory that exists with 0755 and 0644 files (an older
// release's SQLite file, a restored backup) is private after a start.
func TestStartMakesTheDataDirectoryPrivate(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(filepath.Join(data, "repos", "acme"), 0o755)
	os.Chmod(data, 0o755)
	os.WriteFile(filepath.Join(data, "ssh_host_ed25519_key"), []byte("x"), 0o644)
	os.Chmod(filepath.Join(data, "ssh_host_ed25519_key"), 0o644)
	// A store made as before, then widened.
	st, err := openEnv(context.Background(), &options{Data: data}, &serverEnv{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	for _, f := range []string{"upscale.db", "upscale.db-wal", "upscale.db-shm"} {
		os.Chmod(filepath.Join(data, f), 0o644)
	}
	os.Chmod(data, 0o755)
	os.Chmod(filepath.Join(data, "repos"), 0o755)

	st, err = openEnv(context.Background(), &options{Data: data}, &serverEnv{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for name, want := range map[string]os.FileMode{
		"": 0o700, "upscale.db": 0o600, "upscale.db-wal": 0o600, "upscale.db-shm": 0o600,
		"ssh_host_ed25519_key": 0o600, "repos": 0o700,
	} {
		fi, err := os.Stat(filepath.Join(data, name))
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", filepath.Join(data, name), fi.Mode().Perm(), want)
		}
	}
	// Below the top, modes are the owners' (git needs its hooks' x bits).
	if fi, _ := os.Stat(filepath.Join(data, "repos", "acme")); fi.Mode().Perm() != 0o755 {
		t.Errorf("repos/acme: mode %o, want it left 0755", fi.Mode().Perm())
	}
}
