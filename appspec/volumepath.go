package appspec

import (
	"fmt"
	"path"
	"strings"
)

// systemDirs are where a volume may not be mounted in a container, nor
// below: the system's own files, the kernel's interfaces, and the
// release's code in /app itself (a directory below /app is fine).
var systemDirs = []string{"/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin", "/sys", "/usr", "/var/run"}

// CheckVolumePath checks where a volume is mounted in a container: an
// absolute, clean path of printable characters without spaces, not /, not
// /app, and not a system directory or anything below one.
func CheckVolumePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("volume path is empty")
	case len(p) > 1024:
		return fmt.Errorf("volume path is longer than 1024 bytes")
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("volume path %q: want an absolute path", p)
	case strings.Contains("/"+p+"/", "/../") || strings.Contains("/"+p+"/", "/./"):
		return fmt.Errorf("volume path %q: no . or .. allowed", p)
	case path.Clean(p) != p:
		return fmt.Errorf("volume path %q: want it written plainly (%s)", p, path.Clean(p))
	case strings.IndexFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '\\' || r == ',' }) >= 0:
		return fmt.Errorf("volume path %q: no spaces, control characters, commas or backslashes", p)
	case p == "/":
		return fmt.Errorf("volume path /: a volume cannot replace the container's root")
	case p == "/app":
		return fmt.Errorf("volume path /app would hide the app's code; use a directory below it, such as /app/data")
	}
	for _, d := range systemDirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return fmt.Errorf("volume path %s: %s is the system's; use a directory such as /data or /app/data", p, d)
		}
	}
	return nil
}
