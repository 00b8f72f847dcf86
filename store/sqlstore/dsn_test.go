package sqlstore

import (
	"strings"
	"testing"
)

// FuzzParseDSN: any string, no panic, and an error never shows the
// password, whatever the string's shape.
func FuzzParseDSN(f *testing.F) {
	f.Add("mysql://upscale:s3cret@tcp(127.0.0.1:3306)/upscale")
	f.Fuzz(func(t *testing.T, dsn string) {
		_, _, err := parseDSN(dsn, "/var/lib/upscale")
		if err == nil {
			return
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") {
			t.Fatalf("error is not one line: %q", msg)
		}
		start, end, ok := password(dsn)
		if !ok {
			return
		}
		// A short password can be in the fixed text by chance. So change it
		// to a marker: the error must not show the marker, nor show the
		// password only when it is the password.
		const marker = "PASSWORD-MARKER"
		_, _, err2 := parseDSN(dsn[:start]+marker+dsn[end:], "/var/lib/upscale")
		if err2 == nil {
			t.Fatalf("%q fails (%v) but passes with another password", dsn, err)
		}
		pw := dsn[start:end]
		if strings.Contains(err2.Error(), marker) || strings.Contains(msg, pw) && !strings.Contains(err2.Error(), pw) {
			t.Fatalf("error shows the password %q: %q", pw, msg)
		}
	})
}

// password finds what a user would take for the password, as the mysql
// driver does: in the user info, which ends at the last '@' before the last
// '/' (after any "scheme://"), from its first ':'.
func password(dsn string) (start, end int, ok bool) {
	from := 0
	if i := strings.Index(dsn, "://"); i >= 0 {
		from = i + 3
	}
	upTo := len(dsn)
	if slash := strings.LastIndex(dsn[from:], "/"); slash >= 0 {
		upTo = from + slash
	}
	at := strings.LastIndex(dsn[:upTo], "@")
	if at < from {
		return 0, 0, false
	}
	colon := strings.Index(dsn[from:at], ":")
	if colon < 0 || from+colon+1 == at {
		return 0, 0, false
	}
	return from + colon + 1, at, true
}
