package cloud_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/cloud"
	"github.com/upscalehq/upscale/cloud/ec2test"
	"golang.org/x/crypto/ssh"
)

// TestEC2BootE2E is "hosts create --provider ec2" without AWS nor the
// server: Create launches on the stand-in, whose OnRun boots the instance
// by running its user data inside the rig's network namespace; the user
// data fetches the agent with the real OpenSSH client from the real sshd
// (a forced command plays `hosts bootstrap`), installs it and starts it.
func TestEC2BootE2E(t *testing.T) {
	r := newSSHRig(t)
	if _, err := exec.LookPath("ssh"); err != nil {
		if os.Getenv("UPSCALE_E2E") == "1" {
			t.Fatal("the EC2 boot e2e needs the OpenSSH client")
		}
		t.Skip("the EC2 boot e2e needs the OpenSSH client")
	}
	ns := r.nsInode(t)
	e := r.newInstall(t, "ec2")
	e.in.Address = "" // an EC2 host's agent finds its own address

	bootKey, bootPub := privatePEM(t)
	if err := os.WriteFile(filepath.Join(r.conf, "authorized", r.bootUser), ssh.MarshalAuthorizedKey(bootPub), 0o644); err != nil {
		t.Fatal(err)
	}
	agent, _ := os.ReadFile(e.in.Agent)
	if err := os.WriteFile(filepath.Join(r.conf, "agent.tar"), bootstrapTar(t, map[string]string{
		"upscale-agent": string(agent), "credentials.json": string(e.in.Credentials),
	}), 0o644); err != nil {
		t.Fatal(err)
	}
	// The machine has no "upscale" account to spare: a wrapper hands the
	// real ssh the rig's bootstrap user instead.
	tools := t.TempDir()
	wrapper := `#!/bin/sh
n=$#
prev=
for a in "$@"; do
	if [ "$prev" = -l ] && [ "$a" = ` + cloud.BootstrapUser + ` ]; then a=` + r.bootUser + `; fi
	set -- "$@" "$a"
	prev=$a
done
shift "$n"
exec /usr/bin/ssh "$@"
`
	if err := os.WriteFile(filepath.Join(tools, "ssh"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}

	type boot struct {
		id, out string
		err     error
	}
	booted := make(chan boot, 1)
	srv := ec2test.New(ec2test.Config{
		PrivateIP: func(string) string { return r.nsIP },
		OnRun: func(id string, userData []byte) {
			f := filepath.Join(tools, "user-data")
			os.WriteFile(f, userData, 0o700)
			cmd := exec.Command("ip", "netns", "exec", r.ns, "env", "PATH="+tools+":"+os.Getenv("PATH"),
				"UPSCALE_SYSTEMD_ROOT=/nonexistent-upscale-systemd", "sh", f)
			out, err := cmd.CombinedOutput()
			booted <- boot{id, string(out), err}
		},
	})
	defer srv.Close()
	ec := newEC2(t, srv, nil)

	hostKey := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(r.hostKey)))
	userData := cloud.UserData(e.in, r.nsIP+":2222", hostKey, bootKey)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, ip, err := ec.Create(ctx, e.in.Host, userData)
	if err != nil {
		t.Fatal(err)
	}
	if ip != r.nsIP {
		t.Errorf("private IP %s, want %s", ip, r.nsIP)
	}
	var b boot
	select {
	case b = <-booted:
	case <-ctx.Done():
		t.Fatal("the instance did not boot")
	}
	if b.id != id || b.err != nil {
		t.Fatalf("boot of %s (want %s): %v\n%s", b.id, id, b.err, b.out)
	}
	if !strings.HasPrefix(b.out, "-----> Fetching the agent from "+r.nsIP+":2222\n") || !strings.HasSuffix(b.out, "-----> Agent started for host hec2\n") {
		t.Errorf("user data output:\n%s", b.out)
	}
	if got := lines(filepath.Join(r.conf, "bootstrap.log")); len(got) != 1 || got[0] != "hosts bootstrap hec2" {
		t.Errorf("the server was asked %q", got)
	}
	eventually(t, 5*time.Second, "the agent starts", func() bool { return len(lines(e.starts)) == 1 })
	f := strings.SplitN(lines(e.starts)[0], " ", 3)
	d := e.in.Dir
	want := "--credentials " + d + "/credentials.json --name hec2 --state " + d + "/state --lxcpath " + d +
		"/state/containers --images " + d + "-images --bridge upsbr0 --subnet 10.77.9.0/24"
	if f[1] != ns || f[2] != want {
		t.Errorf("agent started in %s with\n%s\nwant %s with\n%s", f[1], f[2], ns, want)
	}
	if got, _ := os.ReadFile(filepath.Join(d, "credentials.json")); string(got) != string(e.in.Credentials) || mode(t, filepath.Join(d, "credentials.json")) != 0o600 {
		t.Error("credentials not in place, or not 0600")
	}
	if left, _ := filepath.Glob(filepath.Join(d, ".bootstrap.*")); len(left) > 0 {
		t.Errorf("bootstrap key left on the host: %v", left)
	}

	if err := ec.Terminate(ctx, id); err != nil {
		t.Fatal(err)
	}
}

// The user data trusts only the host key it was given: anyone else
// answering at the server's address gets no bootstrap key signature.
func TestUserDataRefusesOtherServerKeyE2E(t *testing.T) {
	r := newSSHRig(t)
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("needs the OpenSSH client")
	}
	e := r.newInstall(t, "mitm")
	bootKey, bootPub := privatePEM(t)
	os.WriteFile(filepath.Join(r.conf, "authorized", r.bootUser), ssh.MarshalAuthorizedKey(bootPub), 0o644)
	_, other := privatePEM(t)
	ud := cloud.UserData(e.in, r.nsIP+":2222", strings.TrimSpace(string(ssh.MarshalAuthorizedKey(other))), bootKey)
	out, status := runScript(t, ud, "UPSCALE_BOOTSTRAP_TRIES=2", "UPSCALE_BOOTSTRAP_WAIT=0")
	want := "-----> Fetching the agent from " + r.nsIP + ":2222\nerror: fetching the agent: ssh exited: Host key verification failed.\n"
	if status != 1 || !strings.HasSuffix(out, want) {
		t.Errorf("status %d, output:\n%s\nwant it to end with\n%s", status, out, want)
	}
	if got := lines(filepath.Join(r.conf, "bootstrap.log")); len(got) != 0 {
		t.Errorf("the forced command ran: %q", got)
	}
	if _, err := os.Stat(filepath.Join(e.in.Dir, "upscale-agent")); err == nil {
		t.Error("an agent was installed")
	}
}
