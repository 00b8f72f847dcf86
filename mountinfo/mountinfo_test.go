package mountinfo

import (
	"slices"
	"testing"
)

func TestParse(t *testing.T) {
	table := []byte("36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw\n" +
		"short line\n" +
		"40 35 0:50 / /tmp/upst-v fuse.glusterfs rw - fuse.glusterfs 127.1.1.1:/v rw\n" +
		"41 35 0:51 / /var/cache/a\\040b\\134c rw - tmpfs tmpfs rw")
	want := []string{"/mnt/a b", "/tmp/upst-v", `/var/cache/a b\c`}
	if got := Parse(table); !slices.Equal(got, want) {
		t.Errorf("Parse = %q, want %q", got, want)
	}
}

func TestPointsHasRoot(t *testing.T) {
	points, err := Points()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(points, "/") {
		t.Errorf("no / among this namespace's mount points: %q", points)
	}
}
