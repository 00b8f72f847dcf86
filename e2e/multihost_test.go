package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/upscalehq/upscale/cloud/ec2test"
	"github.com/upscalehq/upscale/e2e/rig"
)

// TestMultiHost runs the scenarios of issue 4 on one world of three real
// hosts (network namespaces with their own sshd, agent, bridge, subnet and
// lxcpath, added with hosts add). The subtests run in order, each leaving
// the world as the next expects; a fourth namespace, never added, plays the
// machines hosts add must refuse.
func TestMultiHost(t *testing.T) {
	ec2 := ec2test.New(ec2test.Config{Images: []string{"ami-0debian12"}})
	t.Cleanup(ec2.Close)
	// The server's AWS SDK reads the standard chain: static keys will do
	// for the stand-in.
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAUPSCALEE2E")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "e2e-secret")
	t.Setenv("AWS_REGION", "eu-west-3")
	w := newHostsWorld(t, "--ec2-endpoint", ec2.URL)
	w.dumpOnFailure(t)
	spare := rig.NewHostNet(t, w.net, w.users)
	keyPEM, err := os.ReadFile(w.users.Key.Path)
	if err != nil {
		t.Fatal(err)
	}
	wrongKey := rig.NewKey(t, "wrong")
	wrongPEM, _ := os.ReadFile(wrongKey.Path)

	// hostsUnchanged: a refused hosts add or create leaves the three hosts
	// as they were, and no route to a new subnet.
	hostsUnchanged := func(t *testing.T) {
		t.Helper()
		rows := w.hostRows(t)
		if len(rows) != 3 {
			t.Errorf("hosts list shows %d hosts after a refused add, want 3: %+v", len(rows), rows)
		}
		if out, _ := exec.Command("ip", "route", "show", w.net.Subnets).Output(); len(out) > 0 {
			// Only the three hosts' routes are within the range.
			if n := strings.Count(strings.TrimSpace(string(out)), "\n") + 1; n > 3 {
				t.Errorf("%d routes within %s, want 3:\n%s", n, w.net.Subnets, out)
			}
		}
	}
	addFails := func(t *testing.T, stdin string, want string, args ...string) {
		t.Helper()
		out, errs, code := w.srv.SSH(w.key, stdin, append([]string{"hosts", "add"}, args...)...)
		if code == 0 || errs != "error: "+want+"\n" {
			t.Errorf("hosts add %v: exit %d, stderr %q\nwant a non-zero exit and the one line %q\nstdout:\n%s", args, code, errs, "error: "+want, out)
		}
		hostsUnchanged(t)
	}

	t.Run("hosts add to an unreachable address", func(t *testing.T) {
		addr := w.net.Base + ".250"
		if out, err := exec.Command("ip", "route", "add", "unreachable", addr+"/32").CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		defer exec.Command("ip", "route", "del", "unreachable", addr+"/32").Run()
		addFails(t, string(keyPEM), "connecting to "+addr+":22: dial tcp "+addr+":22: connect: no route to host",
			"--host", addr, "-u", "root", "-i", "-", "--trust-host-key")
	})
	spareKey := "'" + spare.HostKey() + "'"
	t.Run("hosts add with a wrong key", func(t *testing.T) {
		addFails(t, string(wrongPEM), "authenticating as root on "+spare.IP+":22: the key was refused",
			"--host", spare.IP, "-u", "root", "-i", "-", "--dir", spare.AgentDir, "--host-key", spareKey)
	})
	t.Run("hosts add as a user without sudo", func(t *testing.T) {
		addFails(t, string(keyPEM), spare.IP+" needs root or passwordless sudo for user "+w.users.NoSudo,
			"--host", spare.IP, "-u", w.users.NoSudo, "-i", "-", "--dir", spare.AgentDir, "--host-key", spareKey)
		if _, err := os.Stat(spare.AgentDir); !os.IsNotExist(err) {
			t.Errorf("%s was created on the refused host", spare.AgentDir)
		}
	})
	t.Run("hosts add of a host already registered", func(t *testing.T) {
		h1 := w.hosts["h1"]
		addFails(t, string(keyPEM), h1.IP+" is already registered as host h1 (address "+h1.IP+")",
			"--host", h1.IP, "-u", "root", "-i", "-", "--dir", spare.AgentDir, "--host-key", "'"+h1.HostKey()+"'")
		if pids := h1.AgentPIDs(); len(pids) != 1 {
			t.Errorf("h1 runs %d agents after the refused add, want 1", len(pids))
		}
	})
	t.Run("hosts create on EC2 errors", func(t *testing.T) {
		create := func(ami string) (string, string, int) {
			return w.srv.SSH(w.key, "", "hosts", "create", "--provider", "ec2", "--ami", ami, "--name", "ec2-e2e")
		}
		_, errs, code := create("ami-0nothere")
		want := "error: EC2 RunInstances: InvalidAMIID.NotFound: The image id '[ami-0nothere]' does not exist\n"
		if code == 0 || errs != want {
			t.Errorf("bad AMI: exit %d, stderr %q, want %q", code, errs, want)
		}
		ec2.FailNext("RunInstances", "InstanceLimitExceeded", "You have requested more instances (1) than your current instance limit of 0 allows for the specified instance type.")
		_, errs, code = create("ami-0debian12")
		want = "error: EC2 RunInstances: InstanceLimitExceeded: You have requested more instances (1) than your current instance limit of 0 allows for the specified instance type.\n"
		if code == 0 || errs != want {
			t.Errorf("quota: exit %d, stderr %q, want %q", code, errs, want)
		}
		if n := len(ec2.Instances()); n != 0 {
			t.Errorf("the stand-in has %d instances, want none", n)
		}
		hostsUnchanged(t)
		// The bootstrap key made for the instance is gone with it.
		if keys := w.ssh(t, "keys", "list"); strings.Contains(keys, "bootstrap-ec2-e2e") {
			t.Errorf("keys list still shows the bootstrap key:\n%s", keys)
		}
	})

	webFiles := multiHostApp(t, "web", "runtime: python\ninstances: 2\nmemory: 128M\n")
	webFiles["probe.py"] = probePy
	webDir := rig.Repo(t, webFiles)
	t.Run("instances 2 land on two hosts and both answer", func(t *testing.T) {
		w.mustPush(t, webDir, "acme/web")
		where := w.placement(t, "acme/web")
		if len(where) != 2 {
			t.Fatalf("acme/web runs on %v, want two distinct hosts", where)
		}
		seen := w.bodies(t, "acme/web", 40)
		if len(seen) != 2 {
			t.Fatalf("40 requests got %d distinct bodies (%s), want 2 (one per instance)", len(seen), fmtMap(seen))
		}
		for _, list := range where {
			if seen["web "+list[0]+"\n"] == 0 {
				t.Errorf("instance %s never answered; bodies: %s", list[0], fmtMap(seen))
			}
		}
	})

	// From a container: the app's instances on other hosts, every host's
	// sshd, the server's bus; from a host: another host's container. All
	// out of reach, while the router reaches every instance.
	t.Run("containers reach no other host, container or the server", func(t *testing.T) {
		var targets []string
		for _, p := range w.ps(t, "acme/web") {
			targets = append(targets, p.Addr)
		}
		bus := ""
		for i, a := range w.srv.Args {
			if a == "--bus-listen" {
				_, bus, _ = strings.Cut(w.srv.Args[i+1], ":")
			}
		}
		targets = append(targets, w.net.Advertise+":"+bus)
		for _, name := range w.names {
			targets = append(targets, w.hosts[name].IP+":22", w.hosts[name].RootIP+":"+bus)
		}
		out, errs, code := w.srv.SSH(w.key, "", append([]string{"app", "exec", "acme/web", "--", "python3", "probe.py"}, targets...)...)
		if code != 0 {
			t.Fatalf("probe: exit %d\n%s%s", code, out, errs)
		}
		for _, target := range targets {
			if !strings.Contains(out, target+" blocked\n") {
				t.Errorf("from acme/web's exec container: %s not blocked:\n%s", target, out)
			}
		}
		// Another machine than the router: h1's own address.
		for _, p := range w.ps(t, "acme/web") {
			if p.Host == "h1" {
				continue
			}
			wget := exec.Command("ip", "netns", "exec", w.hosts["h1"].NS, "timeout", "3", "busybox", "wget", "-q", "-O", "-", "http://"+p.Addr+"/")
			got, err := wget.CombinedOutput()
			var exit *exec.ExitError
			switch {
			case err == nil:
				t.Errorf("host h1 reached %s's instance %s: %q", p.Host, p.Addr, got)
			case !errors.As(err, &exit) || exit.ExitCode() == 126 || exit.ExitCode() == 127:
				t.Fatalf("the probe from h1 did not run: %v: %s", err, got) // not a verdict on the network
			}
		}
		if seen := w.bodies(t, "acme/web", 20); len(seen) != 2 {
			t.Errorf("acme/web through the router: %s, want both instances", fmtMap(seen))
		}
	})

	t.Run("a push that fits no host is rejected and the old release serves", func(t *testing.T) {
		// Within the namespace's quota, so that placement is what refuses it.
		w.ssh(t, "namespace", "quota", "set", "acme", "memory=1024G")
		defer w.ssh(t, "namespace", "quota", "set", "acme", "memory=default")
		before := w.placement(t, "acme/web")
		head := gitOut(t, webDir, "rev-parse", "HEAD")
		defer gitOut(t, webDir, "reset", "-q", "--hard", head)
		rig.Commit(t, webDir, "too big", multiHostApp(t, "big", "runtime: python\ninstances: 2\nmemory: 64G\n"))
		errs, code := w.push(webDir, "acme/web")
		rejected(t, "acme/web", errs, code)
		mustHave(t, errs, "remote: error: no host has room: 1 more container(s) of 65536 MiB would not fit on any up host")
		if got := w.placement(t, "acme/web"); fmt.Sprint(got) != fmt.Sprint(before) {
			t.Errorf("acme/web runs on %v after the refused push, want %v", got, before)
		}
		if seen := w.bodies(t, "acme/web", 20); len(seen) != 2 || strings.Contains(fmtMap(seen), "big") {
			t.Errorf("acme/web answers %s, want the old release's two instances", fmtMap(seen))
		}
		w.waitConverged(t, 10*time.Second, "acme/web")
	})

	t.Run("weights shift placement", func(t *testing.T) {
		// acme/api with 2 instances, then again with the busiest host
		// weighted 20: without weights the new instances would go to the
		// least loaded hosts, away from the busiest (when one host is
		// busier than both others, never to it).
		dir := rig.Repo(t, multiHostApp(t, "api", "runtime: python\ninstances: 2\nmemory: 64M\n"))
		w.mustPush(t, dir, "acme/api")
		w.waitConverged(t, 10*time.Second, "acme/web", "acme/api")
		rows := w.hostRows(t)
		slices.SortFunc(rows, func(a, b rig.HostRow) int { return b.Containers - a.Containers })
		busiest := rows[0]
		if busiest.Containers <= rows[len(rows)-1].Containers {
			t.Fatalf("no host is busier than another: %+v", rows)
		}
		out := w.ssh(t, "hosts", "set", busiest.Name, "weight=20")
		if out != "Host "+busiest.Name+" now has weight 20.\n" {
			t.Errorf("hosts set says %q", out)
		}
		rig.Commit(t, dir, "again", multiHostApp(t, "api2", "runtime: python\ninstances: 2\nmemory: 64M\n"))
		w.mustPush(t, dir, "acme/api")
		where := w.placement(t, "acme/api")
		if len(where[busiest.Name]) != 1 || len(where) != 2 {
			t.Errorf("with %s (%d containers) at weight 20 and the others at 1, acme/api runs on %v; want one instance on %s",
				busiest.Name, busiest.Containers, where, busiest.Name)
		}
		w.ssh(t, "hosts", "set", busiest.Name, "weight=1")
		w.waitConverged(t, 10*time.Second, "acme/web", "acme/api")
	})

	t.Run("agent and server restarts move nothing", func(t *testing.T) {
		before := w.waitConverged(t, 10*time.Second, "acme/web", "acme/api")
		web := w.placement(t, "acme/web")
		l := startPrefixLoop(t, w.srv, "acme/web", "web ")
		// An agent killed comes back from its supervisor within a second
		// or two: its host never counts as down, its containers stay.
		h := w.hosts["h2"]
		old := h.AgentPIDs()
		for _, pid := range old {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		deadline := time.Now().Add(15 * time.Second)
		for pids := h.AgentPIDs(); len(pids) != 1 || slices.Equal(pids, old); pids = h.AgentPIDs() {
			if time.Now().After(deadline) {
				t.Fatalf("h2's agent did not come back: %v\n%s", pids, tail(h.AgentLog(), 10))
			}
			time.Sleep(100 * time.Millisecond)
		}
		// The server restarts on its data: the agents dial its bus again.
		if err := w.srv.Stop(); err != nil {
			t.Fatalf("server stop: %v", err)
		}
		w.srv.Run()
		restarted := time.Now()
		for _, n := range w.names {
			w.waitHostState(t, n, "up", 20*time.Second)
		}
		// Healing starts once a silent host would count as down (5 s),
		// then passes every 2 s: let it pass once or twice.
		time.Sleep(time.Until(restarted.Add(10 * time.Second)))
		l.check(t, "across an agent and a server restart")
		if got := w.waitConverged(t, 10*time.Second, "acme/web", "acme/api"); fmt.Sprint(got) != fmt.Sprint(before) {
			t.Errorf("containers per host went from %v to %v", before, got)
		}
		if got := w.placement(t, "acme/web"); fmt.Sprint(got) != fmt.Sprint(web) {
			t.Errorf("acme/web moved from %v to %v", web, got)
		}
		if strings.Contains(w.srv.Log(), `msg="instances lost"`) {
			t.Errorf("the restarted server thought instances were lost:\n%s", tail(w.srv.Log(), 20))
		}
	})

	var cut string
	t.Run("cutting a host keeps the app answering and replaces its instance", func(t *testing.T) {
		where := w.placement(t, "acme/web")
		cut = keysOf(where)[0]
		l := startPrefixLoop(t, w.srv, "acme/web", "web ")
		time.Sleep(time.Second)
		start := time.Now()
		if err := w.hosts[cut].Cut(); err != nil {
			t.Fatal(err)
		}
		// Fresh requests, each on its own (a request the lost host had in
		// flight hangs until the router cuts it), until one is answered by
		// an instance that was not there before: the replacement.
		probe := startNewBodyProbe(w, "acme/web", where, start)
		detected := w.waitHostState(t, cut, "down", 15*time.Second)
		// app ps shows the replacement once the router has let the lost
		// instance go (after its drain timeout); users get it earlier.
		deadline := time.Now().Add(30 * time.Second)
		for {
			now := map[string][]string{}
			for _, p := range w.ps(t, "acme/web") {
				if p.State == "running" {
					now[p.Host] = append(now[p.Host], p.Name)
				}
			}
			if len(now) == 2 && len(now[cut]) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("acme/web runs on %v 30 s after %s was cut; want two other hosts", now, cut)
			}
			time.Sleep(200 * time.Millisecond)
		}
		replaced := probe.await(start.Add(15 * time.Second))
		if replaced == 0 || replaced > 10*time.Second {
			t.Errorf("the replacement answered %s after the cut; want it within 10 s", replaced)
		}
		time.Sleep(time.Second)
		t.Logf("%s cut: down in hosts list after %s, replacement answering after %s", cut, detected.Round(time.Millisecond), replaced.Round(time.Millisecond))
		l.checkRate(t, "while "+cut+" was lost", 0.01)
		if seen := w.bodies(t, "acme/web", 40); len(seen) != 2 {
			t.Errorf("after the replacement acme/web answers %s, want two instances", fmtMap(seen))
		}
	})

	t.Run("the host's return leaves exactly the desired containers", func(t *testing.T) {
		if cut == "" {
			t.Skip("no host was cut")
		}
		h := w.hosts[cut]
		stale, _ := h.Containers()
		if len(stale) == 0 {
			t.Fatalf("the cut host %s has no containers left to clean up", cut)
		}
		if err := h.Restore(); err != nil {
			t.Fatal(err)
		}
		w.waitHostState(t, cut, "up", 20*time.Second)
		got := w.waitConverged(t, 30*time.Second, "acme/web", "acme/api")
		for _, c := range stale {
			if slices.Contains(got[cut], c) {
				t.Errorf("%s still has %s, which the store moved away", cut, c)
			}
		}
		t.Logf("containers per host after %s returned: %v", cut, got)
	})

	t.Run("rebalance evens out the returned host under a steady stream", func(t *testing.T) {
		if cut == "" {
			t.Skip("no host was cut")
		}
		// The returned host runs nothing: the plan moves an instance to it.
		plan := w.ssh(t, "hosts", "rebalance", "--dry-run")
		if !strings.Contains(plan, " to "+cut+"\n") || !strings.Contains(plan, "move(s) planned; run without --dry-run to make them") {
			t.Fatalf("hosts rebalance --dry-run:\n%s\nwant a move to %s", plan, cut)
		}
		if got := w.lxcContainers(t)[cut]; len(got) != 0 {
			t.Fatalf("a dry run changed %s: %v", cut, got)
		}
		l := startPrefixLoop(t, w.srv, "acme/web", "web ")
		time.Sleep(300 * time.Millisecond)
		out := w.ssh(t, "hosts", "rebalance")
		time.Sleep(500 * time.Millisecond)
		// The moved instance may be acme/api's: acme/web must not notice.
		l.check(t, "while rebalancing")
		mustHave(t, out, "-----> Moved ", " to "+cut+" as ", "instance(s) moved")
		got := w.waitConverged(t, 15*time.Second, "acme/web", "acme/api")
		if len(got[cut]) == 0 {
			t.Errorf("after hosts rebalance %s runs nothing: %v", cut, got)
		}
		for _, app := range []string{"acme/web", "acme/api"} {
			where := w.placement(t, app)
			if len(where) != 2 {
				t.Errorf("after hosts rebalance %s runs on %v, want two distinct hosts", app, where)
			}
		}
		if again := w.ssh(t, "hosts", "rebalance", "--dry-run"); !strings.Contains(again, "=====> Nothing to move: the hosts are even") {
			t.Errorf("a second rebalance would still move:\n%s", again)
		}
	})

	var drained string
	t.Run("drain under a steady stream drops no request", func(t *testing.T) {
		where := w.placement(t, "acme/web")
		drained = keysOf(where)[0]
		l := startPrefixLoop(t, w.srv, "acme/web", "web ")
		time.Sleep(500 * time.Millisecond)
		out := w.ssh(t, "hosts", "drain", drained)
		time.Sleep(time.Second)
		l.check(t, "while draining "+drained)
		mustHave(t, out, "-----> Draining "+drained, "=====> "+drained+" is drained: nothing runs there")
		if now := w.placement(t, "acme/web"); len(now[drained]) != 0 || len(now) != 2 {
			t.Errorf("acme/web runs on %v after draining %s", now, drained)
		}
		if st := w.hostState(t, drained); st != "draining" {
			t.Errorf("hosts list shows %s %s, want draining", drained, st)
		}
		got := w.waitConverged(t, 15*time.Second, "acme/web", "acme/api")
		if len(got[drained]) != 0 {
			t.Errorf("%s still has containers %v", drained, got[drained])
		}
	})

	t.Run("draining the last usable host is refused unless --force", func(t *testing.T) {
		if drained == "" {
			t.Skip("no host was drained")
		}
		var rest []string
		for _, n := range w.names {
			if n != drained {
				rest = append(rest, n)
			}
		}
		w.ssh(t, "hosts", "drain", rest[0])
		last := rest[1]
		if now := w.placement(t, "acme/web"); len(now) != 1 || len(now[last]) != 2 {
			t.Errorf("acme/web runs on %v, want both instances on %s", now, last)
		}
		out, errs, code := w.srv.SSH(w.key, "", "hosts", "drain", last)
		if code == 0 || !strings.HasPrefix(errs, "error: host "+last+" is the only host up to run ") ||
			!strings.HasSuffix(errs, "; drain with --force to stop them\n") || strings.Count(errs, "\n") != 1 {
			t.Errorf("drain of the last host: exit %d, stderr %q, stdout %q", code, errs, out)
		}
		if st := w.hostState(t, last); st != "up" {
			t.Errorf("the refused drain left %s %s", last, st)
		}
		if seen := w.bodies(t, "acme/web", 10); len(seen) != 2 {
			t.Errorf("after the refused drain acme/web answers %s", fmtMap(seen))
		}
		out = w.ssh(t, "hosts", "drain", "--force", last)
		mustHave(t, out, "=====> "+last+" is drained: nothing runs there")
		if code, _ := w.get("acme/web"); code != 503 {
			t.Errorf("after a forced drain of every host acme/web answers %d, want 503", code)
		}
		w.waitConverged(t, 15*time.Second, "acme/web", "acme/api")
	})

	t.Run("a removed host's agent exits 3", func(t *testing.T) {
		name := w.names[0]
		h := w.hosts[name]
		out := w.ssh(t, "hosts", "remove", name)
		mustHave(t, out, "=====> Host "+name+" removed; its agent stops")
		deadline := time.Now().Add(15 * time.Second)
		for len(h.AgentPIDs()) > 0 || h.SupervisorPID() != 0 && processAlive(h.SupervisorPID()) {
			if time.Now().After(deadline) {
				t.Fatalf("the agent of removed host %s still runs:\n%s", name, tail(h.AgentLog(), 10))
			}
			time.Sleep(100 * time.Millisecond)
		}
		log := h.AgentLog()
		mustHave(t, log, "upscale-supervisor: upscale-agent exited 3 (credentials revoked): not restarting")
		for _, r := range w.hostRows(t) {
			if r.Name == name {
				t.Errorf("hosts list still shows %s", name)
			}
		}
	})

	t.Run("an agent cannot act as another host", func(t *testing.T) {
		// h2's real credentials, claiming to be h3.
		stdout, stderr, code := runRefusedAgent(t, spare, "impostor", "--credentials",
			filepath.Join(w.hosts[w.names[1]].AgentDir, "credentials.json"), "--name", w.names[2])
		t.Logf("impostor: exit %d\n%s%s", code, stdout, stderr)
		if code == 0 || !strings.Contains(stderr, "permission denied") {
			t.Errorf("impostor agent: exit %d, want a failure saying permission denied:\n%s%s", code, stdout, stderr)
		}
	})

	t.Run("a stranger agent with wrong credentials is refused", func(t *testing.T) {
		// A credentials file as the server hands out, for a host name that
		// exists, with a key the server never issued.
		b, err := os.ReadFile(filepath.Join(w.hosts[w.names[1]].AgentDir, "credentials.json"))
		if err != nil {
			t.Fatal(err)
		}
		var creds map[string]any
		if err := json.Unmarshal(b, &creds); err != nil {
			t.Fatal(err)
		}
		kp, _ := nkeys.CreateUser()
		seed, _ := kp.Seed()
		creds["nkey"] = string(seed)
		forged, _ := json.Marshal(creds)
		credFile := writeFile(t, t.TempDir(), "credentials.json", string(forged), 0o600)
		stdout, stderr, code := runRefusedAgent(t, spare, "stranger", "--credentials", credFile)
		if code != 3 || !strings.Contains(stderr, "credentials refused by the bus") {
			t.Errorf("stranger agent: exit %d, want 3 and \"credentials refused by the bus\":\n%s%s", code, stdout, stderr)
		}
	})
}

func processAlive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// runRefusedAgent runs an agent with args in the spare namespace, with a
// state dir of its own named who, and returns how it ended; one that still
// runs after 30 s fails t.
func runRefusedAgent(t *testing.T, spare *rig.HostNet, who string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	state := filepath.Join(spare.Dir, who)
	os.MkdirAll(state, 0o755)
	cmd := spare.Command(append([]string{filepath.Join(filepath.Dir(bin), "upscale-agent")}, append(args,
		"--state", state, "--images", filepath.Join(state, "images"), "--subnet", "10.252.0.0/24")...)...)
	done := make(chan struct{})
	go func() { stdout, stderr, code = rig.Exec(cmd, ""); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("the %s agent still runs after 30 s:\n%s", who, stderr)
	}
	return stdout, stderr, code
}
