// An image's content key: what it is built from, hashed.

package images

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"runtime"
	"slices"

	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/runtimes"
)

// spec is everything an image is built from; key is its hash.
type spec struct {
	runtime  string
	packages []string // sorted, without duplicates
	suite    string
	mirror   string
	arch     string
	shift    uint32
	key      string
}

func (b *Builder) spec(r runtimes.Runtime) (spec, error) {
	if err := names.Check("runtime", r.Name); err != nil {
		return spec{}, fmt.Errorf("images: %w", err)
	}
	pkgs := slices.Clone(r.Packages)
	slices.Sort(pkgs)
	pkgs = slices.Compact(pkgs)
	for _, p := range pkgs {
		if !packagePattern.MatchString(p) {
			return spec{}, fmt.Errorf("images: runtime %s: invalid Debian package name %s", r.Name, names.Quote(p))
		}
	}
	suite := b.suite()
	if !packagePattern.MatchString(suite) {
		return spec{}, fmt.Errorf("images: invalid suite %s", names.Quote(suite))
	}
	var mirror string
	var err error
	if b.Mirror == "" {
		mirror, err = detectMirror(os.DirFS("/"), suite)
	} else {
		mirror, err = normalizeMirror(b.Mirror)
	}
	if err != nil {
		return spec{}, fmt.Errorf("images: runtime %s: %w", r.Name, err)
	}
	s := spec{runtime: r.Name, packages: pkgs, suite: suite, mirror: mirror, arch: runtime.GOARCH, shift: b.shift()}
	s.key = s.computeKey()
	return s, nil
}

// computeKey hashes what decides the bytes of an image. The runtime's name
// is not hashed but leads the key, so two runtimes never share an image
// directory (and people can read which image is which).
func (s spec) computeKey() string {
	h := sha256.New()
	fmt.Fprintf(h, "format %d\nsuite %s\nmirror %s\narch %s\nshift %d\n", formatVersion, s.suite, s.mirror, s.arch, s.shift)
	for _, p := range s.packages {
		fmt.Fprintf(h, "package %s\n", p)
	}
	return s.runtime + "-" + hex.EncodeToString(h.Sum(nil))[:12]
}

// treeKey names what images of every shift share: the Debian tree.
func (s spec) treeKey() string {
	t := s
	t.shift = 0
	return "tree-" + t.computeKey()
}
