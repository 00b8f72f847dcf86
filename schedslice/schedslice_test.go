package schedslice

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

func needSlices(t *testing.T) {
	t.Helper()
	if !Supported() {
		t.Skip("this kernel keeps no custom slices (Linux 6.12 or later)")
	}
}

func TestSetProcessReachesEveryThreadAndIsInherited(t *testing.T) {
	needSlices(t)
	// A shell with a child: the slice set on the shell's threads must
	// reach them all, and a process the shell starts afterwards inherits it.
	cmd := exec.Command("sh", "-c", "read x; sleep 30 & echo $!; wait")
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	before, _ := Slice(cmd.Process.Pid)
	if before == Short {
		t.Fatalf("a new process already runs with the short slice %v", before)
	}
	if err := SetProcess(cmd.Process.Pid, Short); err != nil {
		t.Fatal(err)
	}
	if got, _ := Slice(cmd.Process.Pid); got != Short {
		t.Fatalf("slice of the shell after SetProcess = %v, want %v", got, Short)
	}
	in.Write([]byte("\n"))
	var pid int
	buf := make([]byte, 32)
	n, _ := out.Read(buf)
	if _, err := fmt.Sscan(string(buf[:n]), &pid); err != nil {
		t.Fatalf("child pid %q: %v", buf[:n], err)
	}
	if got, _ := Slice(pid); got != Short {
		t.Fatalf("slice of a child started after SetProcess = %v, want %v (inherited)", got, Short)
	}
}

func TestSetCgroupWalksTheTree(t *testing.T) {
	needSlices(t)
	// A fake cgroup tree: the walk reads each level's threads, from
	// cgroup.threads (v2) or, lacking it, tasks (v1).
	dir := t.TempDir()
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sub := filepath.Join(dir, "a", "b")
	os.MkdirAll(sub, 0o755)
	os.WriteFile(filepath.Join(dir, "cgroup.threads"), nil, 0o644)
	os.WriteFile(filepath.Join(sub, "tasks"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n999999999\n"), 0o644)
	if err := SetCgroup(dir, 2*Short); err != nil {
		t.Fatalf("SetCgroup with a thread that is gone: %v, want no error", err)
	}
	if got, _ := Slice(cmd.Process.Pid); got != 2*Short {
		t.Fatalf("slice of a thread listed two levels down = %v, want %v", got, 2*Short)
	}
}

func TestGoneIsNoError(t *testing.T) {
	if err := SetProcess(999999999, Short); err != nil {
		t.Fatalf("SetProcess of a pid that does not exist: %v, want nil", err)
	}
	if err := SetTask(999999999, Short); err != nil {
		t.Fatalf("SetTask of a tid that does not exist: %v, want nil", err)
	}
}
