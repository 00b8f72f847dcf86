// Sizes as app.yaml's memory writes them (256M, 2GiB).

package appspec

import (
	"errors"
	"math"
	"strconv"
	"strings"
)

var (
	errSizeSyntax = errors.New("expected a size such as 256M or 2G")
	errSizeRange  = errors.New("too large")
)

// ParseSize reads a size as app.yaml's memory writes it: a whole number
// and a binary unit K, M or G (either case, optionally followed by i, B or
// iB), with no space: 256M, 2GiB. Anything else, a bare number included,
// is an error; so is a size of 8 EiB or more.
func ParseSize(s string) (int64, error) {
	m := memoryRE.FindStringSubmatch(s)
	if m == nil {
		return 0, errSizeSyntax
	}
	shift := 10 * uint(1+strings.IndexAny("KMG", strings.ToUpper(m[2])))
	n, err := strconv.ParseUint(m[1], 10, 63)
	if err != nil || n > math.MaxInt64>>shift {
		return 0, errSizeRange
	}
	return int64(n << shift), nil
}

// FormatSize writes n the way ParseSize reads it, in the largest unit that
// divides it (8G, 1536M), or as bytes when none does.
func FormatSize(n int64) string {
	for _, u := range []struct {
		unit  string
		shift uint
	}{{"G", 30}, {"M", 20}, {"K", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.unit
		}
	}
	return strconv.FormatInt(n, 10) + " bytes"
}
