// Package images builds and caches the runtime images that containers run
// on: a Debian minbase rootfs with a runtime's packages, plus a copy of it
// with every uid and gid shifted for unprivileged containers. An image is
// built once per content key and shared by every container and every agent
// on the machine.
//
// Layout of the cache directory:
//
//	KEY/                   0750 root:SHIFT, so container root (host uid
//	                       SHIFT) can reach the lower dir and host users
//	                       cannot run the image's setuid programs
//	KEY/manifest.json      what was built, when, from what
//	KEY/shifted/           the lower dir of containers: ids + SHIFT
//	KEY/private/rootfs/    the unshifted rootfs; private/ is 0700
//	.lock-KEY              flock(2) held while KEY is being built
//	.lock-tree-RUNTIME-*   held while a build makes or shares the Debian
//	                       tree that images for every shift have in common
//	.build-KEY-*/          a build in progress; renamed to KEY when done
//	.failed-KEY.log        debootstrap.log of the last failed build
//	.broken-KEY-TIME/      a KEY/ found incomplete, kept for the operator
package images

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/upscalehq/upscale/runtimes"
)

// formatVersion is part of every key: bump it when what a build produces
// changes (debootstrap options, trimming, layout), so old images are not
// mistaken for new ones.
const formatVersion = 1

// Defaults of Builder's zero fields.
const (
	DefaultCacheDir = "/var/cache/upscale/images"
	DefaultShift    = 100000
)

const manifestName = "manifest.json"

// packagePattern is Debian policy 5.6.1, as in package runtimes: a name
// that passes cannot carry a comma into debootstrap's --include.
var packagePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)

// Builder builds runtime images into a cache directory. The zero value
// uses the defaults; a Builder has no state of its own, so one value may
// be used from many goroutines.
type Builder struct {
	CacheDir    string // default /var/cache/upscale/images
	Mirror      string // Debian mirror URL; "" = the one in this machine's apt sources (see DetectMirror)
	Suite       string // default "bookworm"
	Shift       uint32 // uid/gid offset for the shifted copy, default 100000
	Debootstrap string // binary, default "debootstrap"
}

// Image is a built runtime image.
type Image struct {
	Key     string // content key: runtime name + short hash
	Runtime string // the runtime's name
	Rootfs  string // the unshifted rootfs (kept: builds could use it; also proof of what was built)
	Shifted string // rootfs with every uid/gid + Shift, the lower dir for containers
	Built   time.Time
	Size    int64 // bytes on disk of one of the two trees
}

// manifest is KEY/manifest.json. Its presence in KEY is what makes KEY an
// image: it is written before the build directory is renamed into place.
type manifest struct {
	Format      int       `json:"format"`
	Key         string    `json:"key"`
	Runtime     string    `json:"runtime"`
	Packages    []string  `json:"packages"`
	Suite       string    `json:"suite"`
	Mirror      string    `json:"mirror"`
	Arch        string    `json:"arch"`
	Shift       uint32    `json:"shift"`
	Built       time.Time `json:"built"`
	BuildTime   float64   `json:"build_seconds"`
	Debootstrap string    `json:"debootstrap_version"`
	Size        int64     `json:"size_bytes"`
}

func (b *Builder) cacheDir() string {
	if b.CacheDir == "" {
		return DefaultCacheDir
	}
	return b.CacheDir
}

func (b *Builder) suite() string {
	if b.Suite == "" {
		return defaultSuite
	}
	return b.Suite
}

func (b *Builder) shift() uint32 {
	if b.Shift == 0 {
		return DefaultShift
	}
	return b.Shift
}

func (b *Builder) debootstrap() string {
	if b.Debootstrap == "" {
		return "debootstrap"
	}
	return b.Debootstrap
}

// Lookup returns the cached image for r without building, ok=false if
// absent.
func (b *Builder) Lookup(r runtimes.Runtime) (Image, bool) {
	s, err := b.spec(r)
	if err != nil {
		return Image{}, false
	}
	img, err := b.load(s.key)
	return img, err == nil
}

// List returns the cached images, sorted by key.
func (b *Builder) List() ([]Image, error) {
	entries, err := os.ReadDir(b.cacheDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	var imgs []Image
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		// A directory that is not a whole image is no image: skip it
		// rather than fail the listing of the good ones.
		if img, err := b.load(e.Name()); err == nil {
			imgs = append(imgs, img)
		}
	}
	return imgs, nil
}

// load reads the image in directory key, checking that it is whole.
func (b *Builder) load(key string) (Image, error) {
	dir := filepath.Join(b.cacheDir(), key)
	data, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return Image{}, err
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return Image{}, fmt.Errorf("%s: %w", dir, err)
	}
	if m.Key != key || m.Format != formatVersion {
		return Image{}, fmt.Errorf("%s: manifest is for %q, format %d", dir, m.Key, m.Format)
	}
	img := Image{
		Key:     key,
		Runtime: m.Runtime,
		Rootfs:  filepath.Join(dir, "private", "rootfs"),
		Shifted: filepath.Join(dir, "shifted"),
		Built:   m.Built,
		Size:    m.Size,
	}
	for _, d := range []string{img.Rootfs, img.Shifted} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return Image{}, fmt.Errorf("%s: %s is missing", dir, d)
		}
	}
	return img, nil
}

// twinImage is a cached image built from the same spec but for another
// shift.
type twinImage struct {
	key, rootfs, debootstrap string
	shift                    uint32
}

func (b *Builder) twin(s spec) (twinImage, bool) {
	entries, _ := os.ReadDir(b.cacheDir())
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), s.runtime+"-") || e.Name() == s.key {
			continue
		}
		data, err := os.ReadFile(filepath.Join(b.cacheDir(), e.Name(), manifestName))
		if err != nil {
			continue
		}
		var m manifest
		if json.Unmarshal(data, &m) != nil || m.Format != formatVersion || m.Runtime != s.runtime || m.Suite != s.suite ||
			m.Mirror != s.mirror || m.Arch != s.arch || !slices.Equal(m.Packages, s.packages) {
			continue
		}
		img, err := b.load(e.Name())
		if err != nil {
			continue
		}
		return twinImage{key: img.Key, rootfs: img.Rootfs, debootstrap: m.Debootstrap, shift: m.Shift}, true
	}
	return twinImage{}, false
}
