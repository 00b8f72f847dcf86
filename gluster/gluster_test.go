package gluster

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func readSample(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// The samples are real answers of glusterd 10.3 (Debian 12) to a pool of
// two on 127.1.1.1 and 127.1.1.2.
func TestParseSamples(t *testing.T) {
	out, err := parseOutput("volume info", readSample(t, "volume-info.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Volumes) != 1 || out.Volumes[0].Name != "upstv" || out.Volumes[0].ReplicaCount != 2 || out.Volumes[0].StatusStr != "Started" {
		t.Errorf("volume info: %+v", out.Volumes)
	}
	var bricks []string
	for _, b := range out.Volumes[0].Bricks {
		bricks = append(bricks, b.Name)
	}
	if want := []string{"127.1.1.1:/tmp/upst-glx/bricks/b1", "127.1.1.2:/tmp/upst-glx/bricks/b2"}; !reflect.DeepEqual(bricks, want) {
		t.Errorf("bricks %q, want %q", bricks, want)
	}

	out, err = parseOutput("volume status", readSample(t, "volume-status.xml"))
	if err != nil || len(out.Status) != 6 || out.Status[0].Hostname != "127.1.1.1" || out.Status[0].Status != 1 || out.Status[1].Path != "/tmp/upst-glx/bricks/b2" {
		t.Errorf("volume status: %+v, %v", out.Status, err)
	}
	out, err = parseOutput("volume heal", readSample(t, "heal-info.xml"))
	if err != nil || len(out.Heal) != 2 || out.Heal[1].Status != "Connected" || out.Heal[1].Entries != "0" {
		t.Errorf("heal info: %+v, %v", out.Heal, err)
	}
	out, err = parseOutput("volume quota", readSample(t, "quota-list-exceeded.xml"))
	if err != nil || len(out.Quota) != 1 || out.Quota[0].HardLimit != 10<<20 || out.Quota[0].Used != 25<<20 || out.Quota[0].Exceeded != "Yes" {
		t.Errorf("quota list: %+v, %v", out.Quota, err)
	}
	out, err = parseOutput("pool list", readSample(t, "pool-list.xml"))
	if err != nil || len(out.Peers) != 2 || out.Peers[1].Hostname != "localhost" || out.Peers[0].Connected != 1 {
		t.Errorf("pool list: %+v, %v", out.Peers, err)
	}
}

func TestParseRefusals(t *testing.T) {
	for file, want := range map[string]string{
		"volume-info-missing.xml":     "gluster volume info: Volume does not exist",
		"create-exists.xml":           "gluster volume create: Volume upstv already exists",
		"volume-stop-stopped.xml":     "gluster volume stop: Volume upstv is not in the started state",
		"peer-probe-unreachable.xml":  "gluster peer probe: Probe returned with Transport endpoint is not connected",
		"create-replica-too-many.xml": "gluster volume create: Failed to create volume files",
	} {
		op := strings.TrimPrefix(strings.SplitN(want, ":", 2)[0], "gluster ")
		_, err := parseOutput(op, readSample(t, file))
		var ge *Error
		if !errors.As(err, &ge) || err.Error() != want {
			t.Errorf("%s: %v, want %q", file, err, want)
		}
	}
	if _, err := parseOutput("volume info", readSample(t, "volume-info-missing.xml")); !notFound(err) {
		t.Errorf("a missing volume reads as %v", err)
	}
	for _, junk := range []string{"", "Connection failed. Please check if gluster daemon is operational.\n", "<other/>"} {
		_, err := parseOutput("volume info", []byte(junk))
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want one line", junk, err)
		}
	}
}

func FuzzParseOutput(f *testing.F) {
	entries, _ := os.ReadDir("testdata")
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".xml") {
			f.Add(readSample(f, e.Name()))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := parseOutput("volume info", data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("a two-line error: %q", err)
			}
			return
		}
		if out.OpRet != 0 {
			t.Errorf("opRet %d read as success", out.OpRet)
		}
	})
}

func TestPlace(t *testing.T) {
	two := []string{"10.0.0.1", "10.0.0.2"}
	for _, tc := range []struct {
		hosts    []string
		replicas int
		want     []string
		err      string
	}{
		{two, 0, []string{"10.0.0.1:/b/v", "10.0.0.2:/b/v"}, ""},
		{[]string{"a", "b", "c", "d"}, 0, []string{"a:/b/v", "b:/b/v", "c:/b/v"}, ""},
		{[]string{"a"}, 0, []string{"a:/b/v"}, ""},
		{two, 1, []string{"10.0.0.1:/b/v"}, ""},
		{two, 3, nil, "--replicas 3 needs 3 storage hosts; there are 2 (10.0.0.1, 10.0.0.2)"},
		{[]string{"a"}, 2, nil, "--replicas 2 needs 2 storage hosts; there is 1 (a)"},
		{nil, 0, nil, "no storage host: add one with hosts add --storage"},
		{two, -1, nil, "--replicas -1: want 1 to 16"},
		{[]string{"a", "a"}, 2, nil, "storage hosts a, a: a host is named twice"},
	} {
		got, err := Place("v", tc.hosts, tc.replicas, "/b")
		var s []string
		for _, b := range got {
			s = append(s, b.String())
		}
		if msg := errText(err); msg != tc.err || !reflect.DeepEqual(s, tc.want) {
			t.Errorf("Place(%q, %d) = %q, %q; want %q, %q", tc.hosts, tc.replicas, s, msg, tc.want, tc.err)
		}
	}
}

func TestSpecChecks(t *testing.T) {
	ok := Brick{Host: "10.0.0.1", Path: "/b/v"}
	for _, tc := range []struct {
		spec Spec
		err  string
	}{
		{Spec{Name: "upscale_a_b", Bricks: []Brick{ok, {Host: "10.0.0.1", Path: "/c/v"}}}, "volume upscale_a_b: two bricks on 10.0.0.1; each replica needs its own host"},
		{Spec{Name: "upscale_a_b", Bricks: []Brick{{Host: "--remote-host=x", Path: "/b"}}}, `storage host "--remote-host=x": want an address or a host name`},
		{Spec{Name: "upscale_a_b", Bricks: []Brick{{Host: "h", Path: "/b/../etc"}}}, "brick h:/b/../etc: want a clean absolute directory"},
		{Spec{Name: "upscale_a_b", Bricks: []Brick{{Host: "h", Path: "/"}}}, "brick h:/: want a clean absolute directory"},
		{Spec{Name: "other", Bricks: []Brick{ok}}, `volume name "other": want one VolumeName makes`},
		{Spec{Name: "upscale_a b", Bricks: []Brick{ok}}, `volume name "upscale_a b": want one VolumeName makes`},
		{Spec{Name: "upscale_a_b"}, "volume upscale_a_b: no bricks"},
	} {
		if got := errText(tc.spec.check()); got != tc.err {
			t.Errorf("%+v: %q, want %q", tc.spec, got, tc.err)
		}
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]string{
		"10G": "", "1M": "", "512K": `size "512K": a volume is at least 1M`, "10": `size "10": expected a size such as 256M or 2G`,
		"-1G": `size "-1G": expected a size such as 256M or 2G`, "99999999999G": `size "99999999999G": too large`,
	} {
		if _, err := ParseSize(in); errText(err) != want {
			t.Errorf("ParseSize(%q): %v, want %q", in, err, want)
		}
	}
	if VolumeName("acme-x", "data") == VolumeName("acme", "x-data") {
		t.Error("two volumes share a GlusterFS name")
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
