package appspec

import (
	"strings"
	"testing"
)

func TestCheckVolumePath(t *testing.T) {
	for _, ok := range []string{"/data", "/app/uploads", "/var/lib/app", "/srv/x-y_z.1", "/home/app/.cache", "/tmp/shared", "/etcetera"} {
		if err := CheckVolumePath(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"/":                             "volume path /: a volume cannot replace the container's root",
		"/proc":                         "volume path /proc: /proc is the system's; use a directory such as /data or /app/data",
		"/proc/self":                    "/proc is the system's",
		"/etc":                          "/etc is the system's",
		"/sys/fs/cgroup":                "/sys is the system's",
		"/dev/shm":                      "/dev is the system's",
		"/usr/local":                    "/usr is the system's",
		"/var/run/x":                    "/var/run is the system's",
		"/app":                          "volume path /app would hide the app's code; use a directory below it, such as /app/data",
		"/data/../etc":                  `volume path "/data/../etc": no . or .. allowed`,
		"/..":                           "no . or .. allowed",
		"/data/./x":                     "no . or .. allowed",
		"data":                          `volume path "data": want an absolute path`,
		"":                              "volume path is empty",
		"/data/":                        `volume path "/data/": want it written plainly (/data)`,
		"//data":                        "want it written plainly",
		"/da ta":                        "no spaces",
		"/data\n/x":                     "no spaces, control characters",
		"/a,ro":                         "commas",
		"/" + strings.Repeat("a", 1024): "longer than 1024 bytes",
	} {
		err := CheckVolumePath(bad)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.30q: %v, want %q", bad, err, want)
		}
	}
}
