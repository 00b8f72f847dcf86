// Package names validates the names users choose (namespaces, apps, key
// names) before they reach a path, a command line or a container name.
package names

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

var pattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,39}$`)

// Check returns an error naming kind and the offending value unless s is a
// valid name.
func Check(kind, s string) error {
	if pattern.MatchString(s) {
		return nil
	}
	if s == "" {
		return fmt.Errorf("%s name is empty", kind)
	}
	return fmt.Errorf("invalid %s name %s: use 1-40 lowercase letters, digits and dashes, starting with a letter", kind, Quote(s))
}

// reserved are namespace names a tenant may not take: words that read as
// the platform's own (in APP.NAMESPACE.DOMAIN, in keys list, in a support
// request) and the prefixes of the platform's own containers (exec-..., and
// build-... before builds were named otherwise).
var reserved = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`admin administrator api assets bootstrap build bus console default
		exec git help host hosts localhost login mail metrics root router security ssh static status
		support system upscale www`) {
		m[w] = true
	}
	return m
}()

// Reserved returns an error when a new namespace may not be called s. Only
// creation asks: a namespace made before a word was reserved keeps working.
func Reserved(s string) error {
	if reserved[s] {
		return fmt.Errorf("namespace name %s is reserved for the platform; choose another", Quote(s))
	}
	return nil
}

// Quote quotes user input for an error message: escaped to one line and
// cut short (on a character boundary) so that a 10 MB argument still gives
// a short error. 64 bytes keep a whole SHA256 key fingerprint.
func Quote(s string) string {
	const max = 64
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}

// App names one application.
type App struct {
	Namespace string
	Name      string
}

func (a App) String() string { return a.Namespace + "/" + a.Name }

// ParseApp parses "NS/APP".
func ParseApp(s string) (App, error) {
	ns, app, ok := strings.Cut(s, "/")
	if !ok {
		return App{}, fmt.Errorf("invalid application %s: want NAMESPACE/APP", Quote(s))
	}
	if err := Check("namespace", ns); err != nil {
		return App{}, err
	}
	if err := Check("application", app); err != nil {
		return App{}, err
	}
	return App{Namespace: ns, Name: app}, nil
}

// ParseRepoPath parses the path a git client asks for: "NS/APP.git" or
// "NS/APP", with at most one leading slash (ssh:// URLs send one).
// Anything else (absolute paths elsewhere, "..", extra slashes) is refused.
func ParseRepoPath(p string) (App, error) {
	s := strings.TrimPrefix(p, "/")
	s = strings.TrimSuffix(s, ".git")
	ns, app, ok := strings.Cut(s, "/")
	if !ok || strings.Contains(app, "/") || Check("namespace", ns) != nil || Check("application", app) != nil {
		return App{}, fmt.Errorf("invalid repository path %s: want NAMESPACE/APP.git", Quote(p))
	}
	return App{Namespace: ns, Name: app}, nil
}
