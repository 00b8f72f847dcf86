package hooks

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const (
	a = "1111111111111111111111111111111111111111"
	b = "2222222222222222222222222222222222222222"
)

func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		name   string
		u      Update
		branch string
		deploy bool
		refuse string
		note   string
	}{
		// A deploy or a refusal says nothing more: note is "" there.
		{"push deploy branch", Update{a, b, "refs/heads/master"}, "master", true, "", ""},
		{"create deploy branch", Update{ZeroID, b, "refs/heads/master"}, "master", true, "", ""},
		{"custom deploy branch", Update{a, b, "refs/heads/main"}, "main", true, "", ""},
		{"delete deploy branch", Update{a, ZeroID, "refs/heads/master"}, "master", false, "deleting the deploy branch master is refused", ""},
		{"other branch", Update{a, b, "refs/heads/feature"}, "master", false, "", "branch feature kept, not deployed (the deploy branch is master)"},
		{"master when main deploys", Update{a, b, "refs/heads/master"}, "main", false, "", "branch master kept, not deployed (the deploy branch is main)"},
		{"delete other branch", Update{a, ZeroID, "refs/heads/feature"}, "master", false, "", "refs/heads/feature deleted"},
		{"tag", Update{ZeroID, b, "refs/tags/v1"}, "master", false, "", "tag v1 kept"},
		{"notes ref", Update{ZeroID, b, "refs/notes/commits"}, "master", false, "refs/notes/commits: only branches and tags can be pushed", ""},
		{"prefix trick", Update{a, b, "refs/heads/master-2"}, "master", false, "", "branch master-2 kept, not deployed (the deploy branch is master)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Judge([]Update{tc.u}, tc.branch)[0]
			if v.Deploy != tc.deploy || !strings.HasPrefix(v.Refuse, tc.refuse) || (tc.refuse == "" && v.Refuse != "") || v.Note != tc.note {
				t.Fatalf("Judge = %+v", v)
			}
		})
	}
}

func TestReadUpdates(t *testing.T) {
	got, err := ReadUpdates(strings.NewReader(a + " " + b + " refs/heads/master\n" + ZeroID + " " + a + " refs/tags/v1\n"))
	if err != nil || len(got) != 2 || got[1] != (Update{ZeroID, a, "refs/tags/v1"}) {
		t.Fatalf("ReadUpdates = %+v, %v", got, err)
	}
	for _, bad := range []string{"x y z\n", a + " " + b + "\n", a + " " + b + " r extra\n", strings.Repeat("A", 40) + " " + b + " r\n"} {
		if _, err := ReadUpdates(strings.NewReader(bad)); err == nil {
			t.Errorf("ReadUpdates(%q) succeeded", bad)
		}
	}
}

func FuzzReadUpdates(f *testing.F) {
	f.Add(a + " " + b + " refs/heads/master\n")
	f.Add(ZeroID + " " + b + " refs/heads/feature\n" + a + " " + ZeroID + " refs/tags/v1\n")
	f.Fuzz(func(t *testing.T, in string) {
		ups, err := ReadUpdates(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, u := range ups {
			if !isObjectID(u.Old) || !isObjectID(u.New) || u.Ref == "" || strings.ContainsAny(u.Ref, " \n") {
				t.Fatalf("accepted bad update %+v", u)
			}
		}
		_ = Judge(ups, "master")
	})
}

// The shim must exec exactly the binary it names, even with quotes and
// spaces in the path.
func TestShimExecsBinary(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "it's a bin")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho \"ran $1 $2\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	shim := filepath.Join(dir, "pre-receive")
	if err := os.WriteFile(shim, []byte(Shim(bin, PreReceive)), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(shim).CombinedOutput()
	if err != nil || string(out) != "ran hook pre-receive\n" {
		t.Fatalf("shim ran: %q, %v", out, err)
	}
}

func TestRunClient(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "hook.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan Request, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var req Request
		json.NewDecoder(c).Decode(&req)
		got <- req
		enc := json.NewEncoder(c)
		enc.Encode(Reply{Line: "app.yaml:3: bad"})
		code := 1
		enc.Encode(Reply{Exit: &code})
	}()
	env := map[string]string{EnvSocket: sock, EnvPushID: "id1", "GIT_QUARANTINE_PATH": "/r/objects/tmp_objdir-x"}
	var stderr bytes.Buffer
	code := RunClient(PreReceive, func(k string) string { return env[k] }, strings.NewReader(a+" "+b+" refs/heads/master\n"), &stderr)
	if code != 1 || stderr.String() != "app.yaml:3: bad\n" {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	req := <-got
	if req.PushID != "id1" || req.Hook != PreReceive || req.QuarantinePath != "/r/objects/tmp_objdir-x" || len(req.Updates) != 1 {
		t.Fatalf("server got %+v", req)
	}
}

func TestRunClientRefusesWithoutServer(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "runs only inside a push"},
		{map[string]string{EnvSocket: filepath.Join(t.TempDir(), "none.sock"), EnvPushID: "x"}, "cannot reach the upscale server"},
	} {
		var stderr bytes.Buffer
		code := RunClient(PreReceive, func(k string) string { return tc.env[k] }, strings.NewReader(""), &stderr)
		if code != 1 || !strings.Contains(stderr.String(), tc.want) || strings.Count(stderr.String(), "\n") != 1 {
			t.Fatalf("exit %d, stderr %q", code, stderr.String())
		}
	}
}
