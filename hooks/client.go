package hooks

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
)

// maxUpdates bounds what one push may carry; git sends one line per ref.
const maxUpdates = 10000

// RunClient is `upscale hook NAME`: it reads git's ref updates from stdin,
// hands them to the server over its unix socket and relays the server's
// answer to the pusher (stderr, which git shows as "remote:" lines). It
// returns the hook's exit status.
func RunClient(hook string, getenv func(string) string, stdin io.Reader, stderr io.Writer) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "upscale: "+format+"\n", a...)
		return 1
	}
	if hook != PreReceive && hook != PostReceive {
		return fail("unknown hook %q", hook)
	}
	socket, pushID := getenv(EnvSocket), getenv(EnvPushID)
	if socket == "" || pushID == "" {
		return fail("this hook runs only inside a push through the Upscale ssh service")
	}
	updates, err := ReadUpdates(stdin)
	if err != nil {
		return fail("%v", err)
	}
	conn, err := net.Dial("unix", socket)
	if err != nil {
		return fail("cannot reach the upscale server (%v); the push is refused", err)
	}
	defer conn.Close()
	req := Request{
		Hook:           hook,
		PushID:         pushID,
		Updates:        updates,
		ObjectDir:      getenv("GIT_OBJECT_DIRECTORY"),
		AltObjectDirs:  getenv("GIT_ALTERNATE_OBJECT_DIRECTORIES"),
		QuarantinePath: getenv("GIT_QUARANTINE_PATH"),
	}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return fail("sending the push to the server: %v", err)
	}
	dec := json.NewDecoder(bufio.NewReader(conn))
	for {
		var r Reply
		if err := dec.Decode(&r); err != nil {
			return fail("the server stopped answering (%v); the push is refused", err)
		}
		if r.Exit != nil {
			return *r.Exit
		}
		fmt.Fprintln(stderr, r.Line)
	}
}

// ReadUpdates parses git's hook input: lines of "OLD NEW REF".
func ReadUpdates(r io.Reader) ([]Update, error) {
	var out []Update
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || !isObjectID(f[0]) || !isObjectID(f[1]) {
			return nil, fmt.Errorf("unexpected hook input line %q", sc.Text())
		}
		if len(out) == maxUpdates {
			return nil, fmt.Errorf("more than %d refs in one push", maxUpdates)
		}
		out = append(out, Update{Old: f[0], New: f[1], Ref: f[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading hook input: %w", err)
	}
	return out, nil
}

func isObjectID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
