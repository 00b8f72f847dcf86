// Create: validating a Spec, reserving name and address, laying out the container's directory.

package lxc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	golxc "github.com/lxc/go-lxc"

	"github.com/upscalehq/upscale/appspec"
)

func (s *Spec) validate(cfg Config) error {
	if err := validName(s.Name); err != nil {
		return err
	}
	if s.Hostname == "" {
		s.Hostname = s.Name
	}
	if !hostnameRE.MatchString(s.Hostname) {
		return fmt.Errorf("invalid hostname %q", s.Hostname)
	}
	// The image ends up in "overlay:LOWER:UPPER" and in overlayfs options.
	if !filepath.IsAbs(s.Image) || strings.ContainsAny(s.Image, ":,\n\x00") {
		return fmt.Errorf("image %q must be an absolute path without ':' or ','", s.Image)
	}
	s.Image = filepath.Clean(s.Image)
	if st, err := os.Stat(s.Image); err != nil || !st.IsDir() {
		return fmt.Errorf("image %s is not a directory: %v", s.Image, err)
	}
	if s.IDMapBase == 0 {
		s.IDMapBase = cfg.IDMapBase
	}
	if s.IDMapBase < 1<<16 || uint64(s.IDMapBase)+uint64(cfg.IDMapSize) > 1<<32-1 {
		// Below 65536 a container's ids would be the host's users and
		// groups.
		return fmt.Errorf("id range %d+%d: want a start from 65536 and an end below 2^32", s.IDMapBase, cfg.IDMapSize)
	}
	// An image shifted for another range is closed to this one (images
	// are 0750 root:SHIFT), so this also catches a mismatched image.
	if err := checkTraversable(s.Image, s.IDMapBase); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if err := checkTraversable(cfg.LXCPath, s.IDMapBase); err != nil {
		return fmt.Errorf("lxcpath: %w", err)
	}
	if _, err := os.Lstat(filepath.Join(s.Image, "bin", "sh")); err != nil {
		return fmt.Errorf("image %s has no /bin/sh for the launcher", s.Image)
	}
	if s.AppDir != "" {
		if st, err := os.Stat(s.AppDir); err != nil || !st.IsDir() {
			return fmt.Errorf("app dir %s is not a directory: %v", s.AppDir, err)
		}
	}
	if strings.TrimSpace(s.Command) == "" || strings.ContainsRune(s.Command, 0) {
		return errors.New("command must be non-empty and contain no NUL")
	}
	for k, v := range s.Env {
		if !envNameRE.MatchString(k) {
			return fmt.Errorf("invalid environment variable name %q", k)
		}
		if strings.ContainsRune(v, 0) {
			return fmt.Errorf("environment variable %s contains NUL", k)
		}
	}
	if s.Memory < 0 || (s.Memory > 0 && s.Memory < 4<<20) {
		return fmt.Errorf("memory limit %d: want 0 or at least 4 MiB", s.Memory)
	}
	if s.PidsMax < 0 {
		return fmt.Errorf("pids limit %d is negative", s.PidsMax)
	}
	if s.ShmSize < 0 || (s.ShmSize > 0 && s.ShmSize < 1<<20) {
		return fmt.Errorf("/dev/shm size %d: want 0 (the default) or at least 1 MiB", s.ShmSize)
	}
	if s.CPU < 0 || s.CPU > 1024 || s.CPU != s.CPU {
		return fmt.Errorf("cpu limit %v: want 0 (none) up to 1024 cores", s.CPU)
	}
	targets := map[string]bool{}
	for _, b := range s.Binds {
		// Both end up in one space-separated lxc.mount.entry line.
		if !filepath.IsAbs(b.Source) || filepath.Clean(b.Source) != b.Source || strings.ContainsAny(b.Source, " \t\n\\,\x00") {
			return fmt.Errorf("bind source %q: want a clean absolute path without spaces", b.Source)
		}
		if err := appspec.CheckVolumePath(b.Target); err != nil {
			return err
		}
		if targets[b.Target] {
			return fmt.Errorf("two binds at %s", b.Target)
		}
		targets[b.Target] = true
	}
	return nil
}

// Create writes everything the container needs (address, LXC config,
// writable layer with /etc/hosts, /etc/resolv.conf, /app and the launcher)
// without starting it.
func (r *Runtime) Create(ctx context.Context, s Spec) (Container, error) {
	if err := s.validate(r.cfg); err != nil {
		return Container{}, fmt.Errorf("lxc: create: %w", err)
	}
	dir, err := r.dir(s.Name)
	if err != nil {
		return Container{}, err
	}
	c, err := r.reserve(s, dir)
	if err != nil {
		return Container{}, err
	}
	err = r.setPort(true, r.port(c))
	if err == nil {
		err = r.build(ctx, c, s)
	}
	if err != nil {
		r.setPort(false, r.port(c))
		r.mu.Lock()
		delete(r.ctrs, s.Name)
		r.mu.Unlock()
		c.release()
		os.RemoveAll(dir)
		return Container{}, fmt.Errorf("lxc: create %s: %w", s.Name, err)
	}
	c.mu.Lock()
	c.ready = true
	c.mu.Unlock()
	return r.status(c), nil
}

// reserve claims the name and an address and records them on disk before
// anything else, so a crash mid-Create cannot lead to a duplicate address.
func (r *Runtime) reserve(s Spec, dir string) (*ctr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if _, ok := r.ctrs[s.Name]; ok {
		return nil, fmt.Errorf("lxc: %s: %w", s.Name, ErrExists)
	}
	ip, err := r.allocIP()
	if err != nil {
		return nil, fmt.Errorf("lxc: %s: %w", s.Name, err)
	}
	if err := os.Mkdir(dir, 0o711); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("lxc: %s: %w (directory %s)", s.Name, ErrExists, dir)
		}
		return nil, fmt.Errorf("lxc: %w", err)
	}
	c := &ctr{name: s.Name, dir: dir, idBase: s.IDMapBase, meta: meta{
		Name: s.Name, IP: ip, Image: s.Image, Hostname: s.Hostname, IDMapBase: s.IDMapBase,
		CreatedAt: time.Now().UTC(), ExitCode: -1,
	}}
	if err := writeMeta(dir, c.meta); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	r.ctrs[s.Name] = c
	r.cursor = ip
	return c, nil
}

func writeMeta(dir string, m meta) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, metaFile), append(data, '\n'), 0o600)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// build lays out the container directory:
//
//	NAME/upscale.json  our record (address, image)
//	NAME/config        LXC config
//	NAME/upper         overlay upper dir = the container's writable layer
//	NAME/work          overlay work dir (LXC derives it from upper's parent)
//	NAME/lxc.log       LXC's errors from the last start
func (r *Runtime) build(ctx context.Context, c *ctr, s Spec) error {
	id := int(c.idBase)
	upper := filepath.Join(c.dir, "upper")
	dirs := []struct {
		path string
		mode os.FileMode
	}{
		{upper, 0o755},
		{filepath.Join(c.dir, "work"), 0o700},
		{filepath.Join(upper, "etc"), 0o755},
		{filepath.Join(upper, stateDirIn), 0o700},
		{filepath.Join(upper, appDirIn), 0o755},
	}
	for _, d := range dirs {
		if err := os.Mkdir(d.path, d.mode); err != nil {
			return err
		}
		// Mkdir honours the umask; the modes above are what the container sees.
		if err := os.Chmod(d.path, d.mode); err != nil {
			return err
		}
		if err := os.Lchown(d.path, id, id); err != nil {
			return err
		}
	}
	hosts := fmt.Sprintf("127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n", s.Hostname)
	var resolv strings.Builder
	for _, d := range r.cfg.DNS {
		fmt.Fprintf(&resolv, "nameserver %s\n", d)
	}
	l := launcher{StateDir: stateDirIn, AppDir: appDirIn, Env: appEnv(s.Env), Command: s.Command}
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{filepath.Join(upper, "etc", "hosts"), []byte(hosts), 0o644},
		{filepath.Join(upper, "etc", "resolv.conf"), []byte(resolv.String()), 0o644},
		// 0700: it holds the app's environment, secrets included.
		{filepath.Join(upper, launcherIn), l.script(), 0o700},
		{filepath.Join(upper, stateDirIn, logName), nil, 0o600},
	}
	for _, f := range files {
		if err := writeOwned(f.path, f.data, f.mode, id); err != nil {
			return err
		}
	}
	if s.AppDir != "" {
		if err := copyTree(ctx, s.AppDir, filepath.Join(upper, appDirIn), id); err != nil {
			return fmt.Errorf("copy app: %w", err)
		}
	}
	lx, err := golxc.NewContainer(c.name, r.cfg.LXCPath)
	if err != nil {
		return fmt.Errorf("liblxc: %w", err)
	}
	for _, kv := range r.lxcConfig(c, s, upper) {
		if err := lx.SetConfigItem(kv[0], kv[1]); err != nil {
			lx.Release()
			return fmt.Errorf("lxc config %s = %q: %w", kv[0], kv[1], err)
		}
	}
	if err := lx.SaveConfigFile(filepath.Join(c.dir, "config")); err != nil {
		lx.Release()
		return fmt.Errorf("save lxc config: %w", err)
	}
	c.mu.Lock()
	c.lx = lx
	c.mu.Unlock()
	return nil
}

func writeOwned(path string, data []byte, mode os.FileMode, id int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Chown(id, id)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
