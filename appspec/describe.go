// How a problem names what was written: what was found, and a did-you-mean for typos.

package appspec

import (
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/upscalehq/upscale/names"
)

// isText reports whether n is a string scalar: `start: 8080` is not a command.
func isText(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str"
}

// found describes what the user wrote, for "expected X, found Y".
func found(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch tag := n.ShortTag(); tag {
	case "!!null":
		return "nothing"
	case "!!str":
		return names.Quote(n.Value)
	case "!!int", "!!float", "!!bool", "!!timestamp":
		// Plain numbers and booleans read better unquoted; an explicit
		// tag (`!!int "1\n2"`) can still carry anything, so check.
		if len(n.Value) > 48 || strings.IndexFunc(n.Value, func(r rune) bool { return r < ' ' || r >= 0x7f }) >= 0 {
			return names.Quote(n.Value)
		}
		return n.Value
	default:
		return names.Quote(n.Value) + " tagged " + names.Quote(tag)
	}
}

// suggest returns " (did you mean X?)" for the closest candidate when it is
// close enough to be a typo, else "".
func suggest(s string, candidates []string) string {
	if len(s) > 64 {
		return ""
	}
	best, bestDist := "", 0
	for _, c := range candidates {
		d := distance(s, c)
		if d <= max(1, len(c)/3) && (best == "" || d < bestDist) {
			best, bestDist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return " (did you mean " + best + "?)"
}

// distance is the Levenshtein distance between a and b, in bytes.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
