package commands

import (
	"errors"
	"strings"
)

// MaxCommandLine bounds an ssh command line; a key is the longest argument
// anyone needs.
const MaxCommandLine = 64 << 10

// Split breaks an ssh command line into words the way a POSIX shell would
// for quoting ('...', "...", backslash), without expanding anything.
// OpenSSH joins the client's argv with spaces, so this undoes one level
// of the user's own shell quoting.
func Split(line string) ([]string, error) {
	if len(line) > MaxCommandLine {
		return nil, errors.New("command line is over 64 KiB")
	}
	var (
		words   []string
		cur     strings.Builder
		inWord  bool
		quote   rune
		escaped bool
	)
	for _, c := range line {
		switch {
		case escaped:
			cur.WriteRune(c)
			escaped = false
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				cur.WriteRune(c)
			}
		case quote == '"':
			switch c {
			case '"':
				quote = 0
			case '\\':
				escaped = true
			default:
				cur.WriteRune(c)
			}
		case c == '\\':
			escaped, inWord = true, true
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, errors.New("command line has an unterminated quote")
	}
	if escaped {
		return nil, errors.New("command line ends with a backslash")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
