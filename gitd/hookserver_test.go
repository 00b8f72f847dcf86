package gitd

import (
	"testing"

	"github.com/upscalehq/upscale/hooks"
)

func TestQuarantineEnvStaysInRepo(t *testing.T) {
	repo := "/data/repos/acme/web.git"
	ok := hooks.Request{
		ObjectDir:      repo + "/objects/tmp_objdir-incoming-x",
		AltObjectDirs:  repo + "/objects",
		QuarantinePath: repo + "/objects/tmp_objdir-incoming-x",
	}
	env, err := quarantineEnv(repo, ok)
	if err != nil || len(env) != 3 {
		t.Fatalf("env %q, %v", env, err)
	}
	for _, bad := range []hooks.Request{
		{ObjectDir: "/data/repos/globex/web.git/objects"},
		{AltObjectDirs: repo + "/objects:/etc"},
		{QuarantinePath: repo + "/../../globex/web.git/objects"},
		{ObjectDir: "../../globex/web.git/objects"},
	} {
		if _, err := quarantineEnv(repo, bad); err == nil {
			t.Errorf("quarantineEnv accepted %+v", bad)
		}
	}
}
