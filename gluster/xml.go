package gluster

import (
	"encoding/xml"
	"errors"
	"fmt"
	"strings"

	"github.com/upscalehq/upscale/msgtext"
)

// cliOutput is what `gluster --xml` prints for every command: opRet says
// whether it worked (the exit status does not: it is 0 for most refusals),
// opErrstr why not, and one section per kind of command.
type cliOutput struct {
	XMLName  xml.Name `xml:"cliOutput"`
	OpRet    int      `xml:"opRet"`
	OpErrno  int      `xml:"opErrno"`
	OpErrstr string   `xml:"opErrstr"`
	Peers    []struct {
		UUID      string `xml:"uuid"`
		Hostname  string `xml:"hostname"`
		Connected int    `xml:"connected"`
		StateStr  string `xml:"stateStr"`
	} `xml:"peerStatus>peer"`
	Volumes []struct {
		Name         string `xml:"name"`
		StatusStr    string `xml:"statusStr"`
		ReplicaCount int    `xml:"replicaCount"`
		TypeStr      string `xml:"typeStr"`
		Bricks       []struct {
			Name string `xml:"name"`
		} `xml:"bricks>brick"`
	} `xml:"volInfo>volumes>volume"`
	VolList []string `xml:"volList>volume"`
	Status  []struct {
		Hostname string `xml:"hostname"`
		Path     string `xml:"path"`
		Status   int    `xml:"status"`
		Port     string `xml:"port"`
	} `xml:"volStatus>volumes>volume>node"`
	Heal []struct {
		Name    string `xml:"name"`
		Status  string `xml:"status"`
		Entries string `xml:"numberOfEntries"`
	} `xml:"healInfo>bricks>brick"`
	Quota []struct {
		Path      string `xml:"path"`
		HardLimit int64  `xml:"hard_limit"`
		Used      int64  `xml:"used_space"`
		Exceeded  string `xml:"hl_exceeded"`
	} `xml:"volQuota>limit"`
}

// parseOutput reads what gluster printed. A refusal (opRet not 0) is an
// *Error with glusterd's own words; output that is not gluster's XML is
// an error naming what it starts with.
func parseOutput(op string, data []byte) (*cliOutput, error) {
	var out cliOutput
	if err := xml.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("gluster %s: unreadable answer %s: %v", op, fmt.Sprintf("%q", msgtext.Truncate(strings.TrimSpace(string(data)), 80)), err)
	}
	if out.OpRet != 0 {
		msg := msgtext.OneLine(strings.TrimSpace(out.OpErrstr))
		if msg == "" {
			msg = fmt.Sprintf("failed (error %d)", out.OpErrno)
		}
		return &out, &Error{Op: op, Errno: out.OpErrno, Msg: msg}
	}
	return &out, nil
}

// Error is glusterd refusing a command, in its words.
type Error struct {
	Op    string // "volume create", ...
	Errno int
	Msg   string
}

func (e *Error) Error() string { return "gluster " + e.Op + ": " + e.Msg }

// notFound says whether err is glusterd's "no such volume".
func notFound(err error) bool {
	var ge *Error
	return errors.As(err, &ge) && strings.Contains(ge.Msg, "does not exist")
}
