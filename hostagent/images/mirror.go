package images

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"unicode"
)

const (
	defaultSuite   = "bookworm"
	maxSourcesFile = 1 << 20
)

// DetectMirror returns the Debian mirror of this machine's apt
// configuration: the URI of the first entry, in the order apt reads them
// (/etc/apt/sources.list, then /etc/apt/sources.list.d/ by name), of type
// deb for the suite bookworm with the component main. Security and other
// suites do not match, as debootstrap needs the main archive.
func DetectMirror() (string, error) {
	return detectMirror(os.DirFS("/"), defaultSuite)
}

func detectMirror(root fs.FS, suite string) (string, error) {
	files := []string{"etc/apt/sources.list"}
	entries, err := fs.ReadDir(root, "etc/apt/sources.list.d")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("images: reading apt sources: %w", err)
	}
	for _, e := range entries {
		if n := e.Name(); !strings.HasPrefix(n, ".") && (strings.HasSuffix(n, ".list") || strings.HasSuffix(n, ".sources")) {
			files = append(files, "etc/apt/sources.list.d/"+n)
		}
	}
	for _, name := range files {
		data, err := readLimited(root, name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("images: reading apt sources: %w", err)
		}
		if m := parseSources(data, strings.HasSuffix(name, ".sources"), suite); m != "" {
			return m, nil
		}
	}
	return "", fmt.Errorf("images: no apt source for %s main in /etc/apt/sources.list or /etc/apt/sources.list.d: set the Debian mirror explicitly", suite)
}

func readLimited(root fs.FS, name string) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSourcesFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSourcesFile {
		return nil, fmt.Errorf("%s is over 1 MiB", name)
	}
	return data, nil
}

// parseSources returns the mirror of the first matching entry of one apt
// sources file, deb822 or one-line, or "".
func parseSources(data []byte, deb822 bool, suite string) string {
	if deb822 {
		return parseDeb822(data, suite)
	}
	return parseOneLine(data, suite)
}

// parseDeb822 reads the format of sources.list(5) "DEB822-STYLE FORMAT":
// paragraphs of "Field: value" separated by blank lines, values continued
// on lines that start with white space, and '#' lines as comments, which
// may sit between fields (Debian's images put a snapshot URL there).
func parseDeb822(data []byte, suite string) string {
	// Values as lists of their lines: appending to a string per
	// continuation line would be quadratic in a long field.
	para := map[string][]string{}
	last := ""
	flush := func() string {
		m := mirrorOfParagraph(para, suite)
		clear(para)
		last = ""
		return m
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, maxSourcesFile+1)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case strings.HasPrefix(line, "#"):
			continue
		case strings.TrimSpace(line) == "":
			if m := flush(); m != "" {
				return m
			}
		case line[0] == ' ' || line[0] == '\t':
			if last != "" {
				para[last] = append(para[last], line)
			}
		default:
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				last = ""
				continue
			}
			last = strings.ToLower(strings.TrimSpace(name))
			para[last] = []string{value}
		}
	}
	return flush()
}

func mirrorOfParagraph(p map[string][]string, suite string) string {
	fields := func(name string) []string { return strings.Fields(strings.Join(p[name], " ")) }
	if len(p) == 0 || slices.ContainsFunc(fields("enabled"), func(s string) bool { return strings.EqualFold(s, "no") }) {
		return ""
	}
	if !slices.Contains(fields("types"), "deb") ||
		!slices.Contains(fields("suites"), suite) ||
		!slices.Contains(fields("components"), "main") {
		return ""
	}
	for _, uri := range fields("uris") {
		if m, err := normalizeMirror(uri); err == nil {
			return m
		}
	}
	return ""
}

// parseOneLine reads "deb [ options ] uri suite component..." lines.
func parseOneLine(data []byte, suite string) string {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, maxSourcesFile+1)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if len(f) > 0 && strings.HasPrefix(f[0], "[") {
			// Options run to the token that closes the bracket, which may
			// be the opening one ("[arch=amd64]").
			end := slices.IndexFunc(f, func(s string) bool { return strings.HasSuffix(s, "]") })
			if end < 0 {
				continue
			}
			f = f[end+1:]
		}
		if len(f) < 3 || f[1] != suite || !slices.Contains(f[2:], "main") {
			continue
		}
		if m, err := normalizeMirror(f[0]); err == nil {
			return m
		}
	}
	return ""
}

// normalizeMirror checks that s is a URL debootstrap can fetch an archive
// from, given as one argument to a shell script, and drops the trailing
// slash so that one mirror gives one image key.
func normalizeMirror(s string) (string, error) {
	if strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r > unicode.MaxASCII }) >= 0 {
		return "", fmt.Errorf("mirror %q contains white space, control or non-ASCII characters", s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("mirror %q: %w", s, err)
	}
	switch u.Scheme {
	case "http", "https", "ftp":
		if u.Host == "" {
			return "", fmt.Errorf("mirror %q has no host", s)
		}
	case "file":
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return "", fmt.Errorf("mirror %q is not an absolute file URL", s)
		}
	default:
		return "", fmt.Errorf("mirror %q: debootstrap fetches from http, https, ftp or file URLs", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(s, "?#") {
		return "", fmt.Errorf("mirror %q has a query or fragment", s)
	}
	if strings.HasSuffix(path.Base(u.Path), "-security") {
		return "", fmt.Errorf("mirror %q is a security archive, not the main one", s)
	}
	m := strings.TrimRight(s, "/")
	if m == u.Scheme+":" || strings.HasSuffix(m, ":/") || strings.HasSuffix(m, "://") {
		return "", fmt.Errorf("mirror %q has no path", s)
	}
	return m, nil
}
