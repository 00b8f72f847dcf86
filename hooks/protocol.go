// Package hooks is the git side of a push: the shims git runs, the thin
// `upscale hook` client they exec, the wire format it speaks to the server,
// and the push policy (which refs may move, which deploy).
package hooks

// Names of the hooks Upscale installs.
const (
	PreReceive  = "pre-receive"
	PostReceive = "post-receive"
)

// Environment variables the git service sets for receive-pack; the hook
// client reads them. Nothing from the ssh client's environment reaches git.
const (
	EnvSocket = "UPSCALE_SOCKET"
	EnvPushID = "UPSCALE_PUSH_ID"
)

// ZeroID is the object name git uses for "no commit" (ref created/deleted).
const ZeroID = "0000000000000000000000000000000000000000"

// Update is one line git gives a receive hook: "OLD NEW REF".
type Update struct {
	Old string `json:"old"`
	New string `json:"new"`
	Ref string `json:"ref"`
}

// Request is what the hook client sends the server, as one JSON line.
type Request struct {
	Hook    string   `json:"hook"`
	PushID  string   `json:"push_id"`
	Updates []Update `json:"updates"`
	// Where git keeps the pushed objects until the hook accepts them.
	ObjectDir      string `json:"object_dir,omitempty"`
	AltObjectDirs  string `json:"alt_object_dirs,omitempty"`
	QuarantinePath string `json:"quarantine_path,omitempty"`
}

// Reply is one JSON line from the server: output for the pusher, or, last,
// the hook's exit status.
type Reply struct {
	Line string `json:"line,omitempty"`
	Exit *int   `json:"exit,omitempty"`
}
