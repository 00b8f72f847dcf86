package cloud_test

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upscalehq/upscale/cloud"
	"golang.org/x/crypto/ssh"
)

// bootstrapKeys returns a private key PEM and a host key in authorized_keys
// form, as the server hands them to UserData.
func bootstrapKeys(t *testing.T) (private []byte, hostKey string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "bootstrap")
	if err != nil {
		t.Fatal(err)
	}
	hostPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(hostPub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " upscale-server"
}

// bootstrapTar is what the server answers to `hosts bootstrap HOST`.
func bootstrapTar(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, name := range []string{"upscale-agent", "credentials.json"} {
		body, ok := files[name]
		if !ok {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

const busSecret = `{"url":"nats://10.0.0.1:4222","user":"agent-h1","password":"bus-secret-7f3a"}`

func TestUserDataParsesAndHoldsNoBusSecret(t *testing.T) {
	key, hostKey := bootstrapKeys(t)
	in := cloud.Install{Host: "h1", Subnet: "10.77.3.0/24", Credentials: []byte(busSecret)}
	ud := cloud.UserData(in, "upscale.example.com:2222", hostKey, key)
	cmd := exec.Command("sh", "-n")
	cmd.Stdin = strings.NewReader(ud)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("does not parse: %v\n%s", err, out)
	}
	if !strings.HasPrefix(ud, "#!/bin/sh\n") {
		t.Error("cloud-init runs user data as a script only when it starts with #!")
	}
	for _, secret := range []string{"bus-secret-7f3a", busSecret, base64.StdEncoding.EncodeToString([]byte(busSecret))} {
		if strings.Contains(ud, secret) {
			t.Errorf("user data holds the bus credentials (%q)", secret)
		}
	}
	if !strings.Contains(ud, strings.TrimSpace(string(key))) {
		t.Error("user data lacks the bootstrap key")
	}
	if len(ud) > cloud.MaxUserData*3/4 {
		t.Errorf("user data is %d bytes: too close to EC2's limit of %d", len(ud), cloud.MaxUserData)
	}
}

func TestUserDataRefusesBadArguments(t *testing.T) {
	key, hostKey := bootstrapKeys(t)
	in := cloud.Install{Host: "h1", Subnet: "10.77.3.0/24"}
	for _, c := range []struct {
		ud, want string
	}{
		{cloud.UserData(in, "upscale.example.com", "not a key", key), "error: checking the install: the server's host key is not in authorized_keys form\n"},
		{cloud.UserData(in, "upscale.example.com", hostKey, []byte("-----BEGIN SECRET-----\nxyz\n")), "error: checking the install: the bootstrap key does not parse: ssh: no key found\n"},
		{cloud.UserData(in, "$(reboot):22", hostKey, key), "error: checking the install: invalid server address \"$(reboot):22\"\n"},
		{cloud.UserData(cloud.Install{Host: "h1"}, "upscale.example.com", hostKey, key), "error: checking the install: invalid container subnet \"\": want a network such as 10.77.3.0/24\n"},
	} {
		out, status := runScript(t, c.ud)
		if status != 1 || out != c.want {
			t.Errorf("status %d, output %q\nwant %q", status, out, c.want)
		}
		if strings.Contains(c.ud, "PRIVATE KEY") {
			t.Error("a refused user data still carries the key")
		}
	}
}

// userDataRig runs UserData with a fake ssh that answers with a tar, and
// fake package and systemd tools.
type userDataRig struct {
	*scriptRig
	sshLog, keyCopy, knownCopy, tarFile string
}

func newUserDataRig(t *testing.T, tarball []byte) *userDataRig {
	t.Helper()
	r := &userDataRig{scriptRig: newScriptRig(t, true)}
	// The agent files come from the tar, not from a previous install.
	os.RemoveAll(r.in.Dir)
	base := t.TempDir()
	r.sshLog = filepath.Join(base, "ssh.log")
	r.keyCopy = filepath.Join(base, "key")
	r.knownCopy = filepath.Join(base, "known_hosts")
	r.tarFile = filepath.Join(base, "agent.tar")
	if err := os.WriteFile(r.tarFile, tarball, 0o644); err != nil {
		t.Fatal(err)
	}
	fakeSSH := `#!/bin/sh
printf '%s\n' "$*" >> '` + r.sshLog + `'
while [ $# -gt 0 ]; do
	case "$1" in
	-i) cp "$2" '` + r.keyCopy + `'; shift ;;
	-o) case "$2" in UserKnownHostsFile=*) cp "${2#UserKnownHostsFile=}" '` + r.knownCopy + `' ;; esac; shift ;;
	esac
	shift
done
cat '` + r.tarFile + `'
`
	if err := os.WriteFile(filepath.Join(r.tools, "ssh"), []byte(fakeSSH), 0o755); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestUserDataFetchesAndInstalls(t *testing.T) {
	agent := stubAgent("/nonexistent/starts", "/nonexistent/plan", "/nonexistent/teardown")
	r := newUserDataRig(t, bootstrapTar(t, map[string]string{"upscale-agent": agent, "credentials.json": busSecret}))
	key, hostKey := bootstrapKeys(t)
	r.in.Address = ""
	out, status := runScript(t, cloud.UserData(r.in, "upscale.example.com:2222", hostKey, key), r.env...)
	if status != 0 {
		t.Fatalf("status %d\n%s", status, out)
	}
	if !strings.HasPrefix(out, "-----> Fetching the agent from upscale.example.com:2222\n-----> Checking "+r.in.Dir+"\n") ||
		!strings.HasSuffix(out, "-----> Agent started for host h1\n") {
		t.Errorf("output:\n%s", out)
	}
	calls := lines(r.sshLog)
	if len(calls) != 1 || !strings.HasSuffix(calls[0], " -o StrictHostKeyChecking=yes -o UserKnownHostsFile="+filepath.Dir(strings.Fields(calls[0])[3])+"/known_hosts -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=15 -o ServerAliveInterval=15 -o ServerAliveCountMax=4 -p 2222 -l upscale upscale.example.com hosts bootstrap h1") {
		t.Errorf("ssh calls: %q", calls)
	}
	if got, _ := os.ReadFile(r.keyCopy); strings.TrimSpace(string(got)) != strings.TrimSpace(string(key)) {
		t.Errorf("ssh got the key\n%s\nwant\n%s", got, key)
	}
	wantKnown := "[upscale.example.com]:2222 " + strings.Join(strings.Fields(hostKey)[:2], " ") + "\n"
	if got, _ := os.ReadFile(r.knownCopy); string(got) != wantKnown {
		t.Errorf("known_hosts %q, want %q", got, wantKnown)
	}
	if got, _ := os.ReadFile(filepath.Join(r.in.Dir, "upscale-agent")); string(got) != agent {
		t.Error("the agent binary is not the tar's")
	}
	if got, _ := os.ReadFile(filepath.Join(r.in.Dir, "credentials.json")); string(got) != busSecret {
		t.Error("the credentials are not the tar's")
	}
	if m := mode(t, filepath.Join(r.in.Dir, "upscale-agent")); m != 0o755 {
		t.Errorf("agent mode %o", m)
	}
	if m := mode(t, filepath.Join(r.in.Dir, "credentials.json")); m != 0o600 {
		t.Errorf("credentials mode %o", m)
	}
	if got, _ := os.ReadFile(filepath.Join(r.in.Dir, "install.sh")); string(got) != cloud.Script(r.in) {
		t.Error("install.sh is not Script's content")
	}
	left, _ := filepath.Glob(filepath.Join(r.in.Dir, ".bootstrap.*"))
	if len(left) > 0 {
		t.Errorf("the bootstrap key's directory is left: %v", left)
	}
	unit, _ := os.ReadFile(filepath.Join(r.systemdFS, "etc/systemd/system/upscale-agent-h1.service"))
	if strings.Contains(string(unit), "--address") {
		t.Errorf("an EC2 host's address is the agent's to find:\n%s", unit)
	}
	if !strings.HasSuffix(strings.Join(lines(r.calls), "\n"), "systemctl restart upscale-agent-h1.service") {
		t.Errorf("calls: %q", lines(r.calls))
	}
}

func TestUserDataDefaultPort(t *testing.T) {
	r := newUserDataRig(t, bootstrapTar(t, map[string]string{"upscale-agent": "#!/bin/sh\n", "credentials.json": "{}"}))
	key, hostKey := bootstrapKeys(t)
	if out, status := runScript(t, cloud.UserData(r.in, "10.0.0.1", hostKey, key), r.env...); status != 0 {
		t.Fatalf("status %d\n%s", status, out)
	}
	if calls := lines(r.sshLog); len(calls) != 1 || !strings.HasSuffix(calls[0], " -p 22 -l upscale 10.0.0.1 hosts bootstrap h1") {
		t.Errorf("ssh calls: %q", calls)
	}
	wantKnown := "10.0.0.1 " + strings.Join(strings.Fields(hostKey)[:2], " ") + "\n"
	if got, _ := os.ReadFile(r.knownCopy); string(got) != wantKnown {
		t.Errorf("known_hosts %q, want %q", got, wantKnown)
	}
}

func TestUserDataBadTar(t *testing.T) {
	r := newUserDataRig(t, bootstrapTar(t, map[string]string{"upscale-agent": "#!/bin/sh\n"}))
	key, hostKey := bootstrapKeys(t)
	out, status := runScript(t, cloud.UserData(r.in, "10.0.0.1:2222", hostKey, key), r.env...)
	want := "-----> Fetching the agent from 10.0.0.1:2222\nerror: unpacking the agent: tar: credentials.json: Not found in archive\n"
	if status != 1 || out != want {
		t.Errorf("status %d, output %q\nwant %q", status, out, want)
	}
	left, _ := filepath.Glob(filepath.Join(r.in.Dir, ".bootstrap.*"))
	if len(left) > 0 {
		t.Errorf("the bootstrap key's directory is left after a failure: %v", left)
	}
}
