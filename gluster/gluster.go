// Package gluster is the storage engine: it drives GlusterFS through the
// gluster command line of one glusterd of the trusted pool (peers,
// replicated volumes with a quota, their health) and mounts volumes with
// the FUSE client. It reads gluster's --xml answers only: the text output
// changes between releases, the XML does not.
package gluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/upscalehq/upscale/appspec"
	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
)

// CLI runs gluster commands against one glusterd.
type CLI struct {
	// Command is how to run the gluster binary; nil is {"gluster"}. Tests
	// prefix it (nsenter into the mount namespace of a test glusterd).
	Command []string
}

// run runs `gluster --mode=script ARGS --xml` and parses the answer.
func (c CLI) run(ctx context.Context, args ...string) (*cliOutput, error) {
	argv := slices.Clone(c.Command)
	if len(argv) == 0 {
		argv = []string{"gluster"}
	}
	argv = append(argv, "--mode=script")
	argv = append(argv, args...)
	argv = append(argv, "--xml")
	op := strings.Join(args[:min(len(args), 2)], " ")
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if stdout.Len() == 0 {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("gluster %s: the gluster command is not installed (Debian: glusterfs-server)", op)
		}
		why := msgtext.Truncate(msgtext.OneLine(stderr.String()), 200)
		if why == "" && err != nil {
			why = err.Error()
		}
		return nil, fmt.Errorf("gluster %s: no answer from glusterd: %s", op, why)
	}
	return parseOutput(op, stdout.Bytes())
}

// Peer is one member of the trusted pool.
type Peer struct {
	UUID      string
	Hostname  string // "localhost" for the glusterd asked
	Connected bool
}

// Probe adds the glusterd at host (an address or name) to the pool. A
// host in the pool already is no error.
func (c CLI) Probe(ctx context.Context, host string) error {
	if err := checkHost(host); err != nil {
		return err
	}
	_, err := c.run(ctx, "peer", "probe", host)
	return err
}

// Detach takes host out of the pool; glusterd refuses while it holds bricks.
func (c CLI) Detach(ctx context.Context, host string) error {
	if err := checkHost(host); err != nil {
		return err
	}
	_, err := c.run(ctx, "peer", "detach", host)
	return err
}

// Peers lists the pool, the glusterd asked included.
func (c CLI) Peers(ctx context.Context) ([]Peer, error) {
	out, err := c.run(ctx, "pool", "list")
	if err != nil {
		return nil, err
	}
	var ps []Peer
	for _, p := range out.Peers {
		ps = append(ps, Peer{UUID: p.UUID, Hostname: p.Hostname, Connected: p.Connected == 1})
	}
	return ps, nil
}

// checkHost keeps what goes on gluster's command line an address or a
// host name, never an option or a second word.
func checkHost(host string) error {
	if host == "" || len(host) > 253 || strings.Trim(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:") != "" || host[0] == '-' {
		return fmt.Errorf("storage host %q: want an address or a host name", host)
	}
	return nil
}

// VolumeName is the GlusterFS name of namespace's volume name: names
// hold no '_', so no two pairs share one.
func VolumeName(namespace, name string) string { return "upscale_" + namespace + "_" + name }

// Brick is where one copy of a volume lives: a directory on a storage host.
type Brick struct {
	Host string // as the pool knows it (its address)
	Path string // absolute
}

func (b Brick) String() string { return b.Host + ":" + b.Path }

// Spec is a volume to create.
type Spec struct {
	Name   string  // GlusterFS name (VolumeName)
	Bricks []Brick // one per replica, each on its own host
	Size   int64   // bytes, its quota; 0 = none
}

// Place chooses a volume's bricks: replicas of them, on distinct hosts,
// the first hosts given (the caller orders them, least loaded first), each
// at root/NAME. replicas 0 is as many hosts as there are, up to 3. Too few
// hosts is one line saying how many there are.
func Place(name string, hosts []string, replicas int, root string) ([]Brick, error) {
	distinct := slices.Clone(hosts)
	slices.Sort(distinct)
	if len(slices.Compact(distinct)) != len(hosts) {
		return nil, fmt.Errorf("storage hosts %s: a host is named twice", strings.Join(hosts, ", "))
	}
	if replicas == 0 {
		replicas = min(len(hosts), 3)
	}
	switch {
	case len(hosts) == 0:
		return nil, errors.New("no storage host: add one with hosts add --storage")
	case replicas < 1 || replicas > 16:
		return nil, fmt.Errorf("--replicas %d: want 1 to 16", replicas)
	case replicas > len(hosts):
		return nil, fmt.Errorf("--replicas %d needs %d storage hosts; there %s %d (%s)", replicas, replicas,
			map[bool]string{true: "is", false: "are"}[len(hosts) == 1], len(hosts), strings.Join(hosts, ", "))
	}
	var bricks []Brick
	for _, h := range hosts[:replicas] {
		bricks = append(bricks, Brick{Host: h, Path: path.Join(root, name)})
	}
	return bricks, nil
}

func (s Spec) check() error {
	if !strings.HasPrefix(s.Name, "upscale_") || len(s.Name) > 100 || strings.Trim(s.Name, "abcdefghijklmnopqrstuvwxyz0123456789_-") != "" {
		return fmt.Errorf("volume name %q: want one VolumeName makes", s.Name)
	}
	if len(s.Bricks) == 0 {
		return fmt.Errorf("volume %s: no bricks", s.Name)
	}
	seen := map[string]bool{}
	for _, b := range s.Bricks {
		if err := checkHost(b.Host); err != nil {
			return err
		}
		if !path.IsAbs(b.Path) || path.Clean(b.Path) != b.Path || b.Path == "/" || strings.ContainsAny(b.Path, ": \n\x00") {
			return fmt.Errorf("brick %s: want a clean absolute directory", b)
		}
		if seen[b.Host] {
			return fmt.Errorf("volume %s: two bricks on %s; each replica needs its own host", s.Name, b.Host)
		}
		seen[b.Host] = true
	}
	if s.Size < 0 {
		return fmt.Errorf("volume %s: negative size", s.Name)
	}
	return nil
}

// Create makes, starts and limits a replicated volume. "force" lets
// bricks sit on the root filesystem, where a single machine keeps its
// data dir. A step that fails undoes the earlier ones, so that Create can
// simply be run again.
func (c CLI) Create(ctx context.Context, s Spec) error {
	if err := s.check(); err != nil {
		return err
	}
	args := []string{"volume", "create", s.Name}
	if len(s.Bricks) > 1 {
		args = append(args, "replica", strconv.Itoa(len(s.Bricks)))
	}
	for _, b := range s.Bricks {
		args = append(args, b.String())
	}
	if _, err := c.run(ctx, append(args, "force")...); err != nil {
		return err
	}
	err := func() error {
		if _, err := c.run(ctx, "volume", "start", s.Name); err != nil {
			return err
		}
		if s.Size == 0 {
			return nil
		}
		if _, err := c.run(ctx, "volume", "quota", s.Name, "enable"); err != nil {
			return err
		}
		_, err := c.run(ctx, "volume", "quota", s.Name, "limit-usage", "/", strconv.FormatInt(s.Size, 10)+"B")
		return err
	}()
	if err != nil {
		return errors.Join(err, c.Delete(context.WithoutCancel(ctx), s.Name))
	}
	return nil
}

// Delete stops and deletes a volume; its bricks' directories stay on the
// storage hosts (glusterd leaves them). A volume that does not exist is
// no error.
func (c CLI) Delete(ctx context.Context, name string) error {
	if _, err := c.run(ctx, "volume", "stop", name, "force"); err != nil && !notFound(err) && !notStarted(err) {
		return err
	}
	if _, err := c.run(ctx, "volume", "delete", name); err != nil && !notFound(err) {
		return err
	}
	return nil
}

func notStarted(err error) bool {
	var ge *Error
	return errors.As(err, &ge) && strings.Contains(ge.Msg, "not in the started state")
}

// List names the pool's volumes.
func (c CLI) List(ctx context.Context) ([]string, error) {
	out, err := c.run(ctx, "volume", "list")
	if err != nil {
		return nil, err
	}
	return out.VolList, nil
}

// Volume is what the pool says of a volume.
type Volume struct {
	Name     string
	Started  bool
	Replicas int
	Bricks   []BrickState
	Size     int64 // its quota; 0 when none
	Used     int64 // what its quota counts
}

// BrickState is one brick as the pool sees it now.
type BrickState struct {
	Brick
	Online bool
	// Heal is how many entries wait to be healed onto it; -1 when its
	// host cannot say (it is down).
	Heal int
}

// Info reads a volume's bricks, whether each is online, what waits to be
// healed, and its quota's use. ErrNotFound (wrapped) when there is no
// such volume.
func (c CLI) Info(ctx context.Context, name string) (Volume, error) {
	out, err := c.run(ctx, "volume", "info", name)
	if notFound(err) {
		return Volume{}, fmt.Errorf("volume %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return Volume{}, err
	}
	if len(out.Volumes) != 1 {
		return Volume{}, fmt.Errorf("gluster volume info: %d volumes in the answer for %s", len(out.Volumes), name)
	}
	vi := out.Volumes[0]
	v := Volume{Name: vi.Name, Started: vi.StatusStr == "Started", Replicas: max(vi.ReplicaCount, 1)}
	for _, b := range vi.Bricks {
		host, p, ok := strings.Cut(b.Name, ":")
		if !ok {
			return Volume{}, fmt.Errorf("gluster volume info: brick %q is not HOST:PATH", b.Name)
		}
		v.Bricks = append(v.Bricks, BrickState{Brick: Brick{Host: host, Path: p}, Heal: -1})
	}
	if !v.Started {
		return v, nil
	}
	if st, err := c.run(ctx, "volume", "status", name); err == nil {
		for _, n := range st.Status {
			for i := range v.Bricks {
				if v.Bricks[i].Host == n.Hostname && v.Bricks[i].Path == n.Path {
					v.Bricks[i].Online = n.Status == 1
				}
			}
		}
	} else {
		return Volume{}, err
	}
	if h, err := c.run(ctx, "volume", "heal", name, "info"); err == nil {
		for _, hb := range h.Heal {
			for i := range v.Bricks {
				if v.Bricks[i].String() != hb.Name {
					continue
				}
				if n, err := strconv.Atoi(hb.Entries); err == nil && hb.Status == "Connected" {
					v.Bricks[i].Heal = n
				}
			}
		}
	} else if !isNoHeal(err) {
		return Volume{}, err
	}
	if q, err := c.run(ctx, "volume", "quota", name, "list"); err == nil {
		for _, l := range q.Quota {
			if l.Path == "/" {
				v.Size, v.Used = l.HardLimit, l.Used
			}
		}
	} else if !isNoQuota(err) {
		return Volume{}, err
	}
	return v, nil
}

// isNoHeal: a volume of one brick has nothing to heal.
func isNoHeal(err error) bool {
	var ge *Error
	return errors.As(err, &ge) && strings.Contains(ge.Msg, "not of type replicate")
}

func isNoQuota(err error) bool {
	var ge *Error
	return errors.As(err, &ge) && (strings.Contains(ge.Msg, "No quota configured") || strings.Contains(ge.Msg, "Quota is disabled"))
}

// ErrNotFound is a volume the pool does not have.
var ErrNotFound = errors.New("no such volume")

// CheckName checks a volume's own name (the NAME of NS/NAME).
func CheckName(name string) error { return names.Check("volume", name) }

// ParseSize reads a volume's size as `--size 10G` writes it; volumes are
// at least 1 MiB.
func ParseSize(s string) (int64, error) {
	n, err := appspec.ParseSize(s)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	if n < 1<<20 {
		return 0, fmt.Errorf("size %q: a volume is at least 1M", s)
	}
	return n, nil
}
