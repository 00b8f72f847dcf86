// Parsers for HAProxy 2.6's answers about certificates, strict like those
// of parse.go.

package router

import (
	"fmt"
	"strconv"
	"strings"
)

// crtLine is one entry of "show ssl crt-list -n LIST".
type crtLine struct {
	file  string
	line  int
	names []string // SNI filters
}

// parseCrtList reads "show ssl crt-list -n LIST": "# LIST", then
// "FILE:LINE [ssl options] filter..." per entry.
func parseCrtList(s string) ([]crtLine, error) {
	lines := nonEmptyLines(s)
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "# ") {
		return nil, fmt.Errorf("show ssl crt-list: no header in %q", truncate(s))
	}
	var out []crtLine
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		i := strings.LastIndexByte(f[0], ':')
		if i <= 0 {
			return nil, fmt.Errorf("show ssl crt-list: no line number in %q", truncate(l))
		}
		n, err := strconv.Atoi(f[0][i+1:])
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("show ssl crt-list: bad line number in %q", truncate(l))
		}
		e := crtLine{file: f[0][:i], line: n}
		inOpts := false
		for _, w := range f[1:] {
			switch {
			case strings.HasPrefix(w, "["):
				inOpts = !strings.HasSuffix(w, "]")
			case inOpts:
				inOpts = !strings.HasSuffix(w, "]")
			default:
				e.names = append(e.names, w)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// loadedCerts is "show ssl cert": the certificate files HAProxy holds, and
// those with a transaction open ("*FILE").
type loadedCerts struct {
	files, open map[string]bool
}

func parseLoadedCerts(s string) (loadedCerts, error) {
	lc := loadedCerts{files: map[string]bool{}, open: map[string]bool{}}
	lines := nonEmptyLines(s)
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "# ") {
		return loadedCerts{}, fmt.Errorf("show ssl cert: no header in %q", truncate(s))
	}
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "*"):
			lc.open[l[1:]] = true
		case strings.HasPrefix(l, "/") && !strings.ContainsAny(l, " \t"):
			lc.files[l] = true
		default:
			return loadedCerts{}, fmt.Errorf("show ssl cert: malformed line %q", truncate(l))
		}
	}
	return lc, nil
}

// parseCertFingerprint reads "show ssl cert FILE" for the SHA-1
// fingerprint of the certificate HAProxy serves from FILE.
func parseCertFingerprint(s string) (string, error) {
	for _, l := range nonEmptyLines(s) {
		if v, ok := strings.CutPrefix(l, "SHA1 FingerPrint:"); ok {
			v = strings.TrimSpace(v)
			if len(v) != 40 || strings.Trim(v, "0123456789ABCDEF") != "" {
				return "", fmt.Errorf("show ssl cert: bad fingerprint %q", truncate(v))
			}
			return v, nil
		}
	}
	return "", fmt.Errorf("show ssl cert: no fingerprint in %q", truncate(s))
}
