package commands

import (
	"context"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/upscalehq/upscale/hostops"
	"github.com/upscalehq/upscale/store"
)

// recordHostOps keeps the last hosts add request.
type recordHostOps struct {
	fakeHostOps
	got *hostops.AddRequest
}

func (r recordHostOps) Add(_ context.Context, req hostops.AddRequest, _ func(string)) error {
	*r.got = req
	return nil
}

// The host key flags reach hosts add parsed, and a key that is not one
// (or one that ssh split into words) is refused in one line before
// anything is done.
func TestHostsAddHostKeyFlags(t *testing.T) {
	w := newWorld(t)
	var got hostops.AddRequest
	w.env.HostOps = recordHostOps{got: &got}
	rewire(w.env, nil, nil, store.Quota{}, false)
	key := newKeyLine(t, "host")
	pub, _, _, _, _ := gossh.ParseAuthorizedKey([]byte(key))

	base := []string{"hosts", "add", "--host", "10.0.0.9", "-i", "-"}
	r := run(w.env, w.admin, "IDENTITY", append(base, "--host-key", key, "--host-key", "10.0.0.9 "+key)...)
	if r.code != 0 || len(got.HostKeys) != 2 || gossh.FingerprintSHA256(got.HostKeys[1]) != gossh.FingerprintSHA256(pub) {
		t.Errorf("exit %d %s; keys %v, want two, the host's", r.code, r.stderr, got.HostKeys)
	}
	got = hostops.AddRequest{}
	r = run(w.env, w.admin, "IDENTITY", append(base, "--known-hosts", "/etc/ssh/ssh_known_hosts", "--trust-host-key")...)
	if r.code != 0 || got.KnownHosts != "/etc/ssh/ssh_known_hosts" || !got.TrustHostKey || got.HostKeys != nil {
		t.Errorf("exit %d %s; request %+v", r.code, r.stderr, got)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--host-key", "ssh-ed25519"}, `error: --host-key: invalid host key "ssh-ed25519": give it as 'ssh-ed25519 AAAA...' (the output of ssh-keyscan HOST will do)` + "\n"},
		{[]string{"--host-key", "ssh-ed25519", "AAAAC3Nza"}, `error: --host-key takes the key as one argument; over ssh, quote it twice: --host-key "'ssh-ed25519 AAAA...'" (got "AAAAC3Nza" after it)` + "\n"},
	} {
		got = hostops.AddRequest{Address: "untouched"}
		r := run(w.env, w.admin, "IDENTITY", append(base, c.args...)...)
		if r.code == 0 || r.stderr != c.want || got.Address != "untouched" {
			t.Errorf("%v: exit %d, stderr %q, want %q; Add called: %v", c.args, r.code, r.stderr, c.want, got.Address != "untouched")
		}
	}
}
