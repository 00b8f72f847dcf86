package hooks

import (
	"fmt"
	"strings"
)

// Verdict says what to do with one ref update.
type Verdict struct {
	Update
	Deploy bool   // the deploy branch moves: validate app.yaml, then deploy
	Refuse string // non-empty: reject the whole push with this reason
	Note   string // shown to the pusher when the update is accepted as is
}

// Judge decides each update of a push to an app whose deploy branch is
// deployBranch. It is pure so the policy can be tested without git.
func Judge(updates []Update, deployBranch string) []Verdict {
	deployRef := "refs/heads/" + deployBranch
	out := make([]Verdict, 0, len(updates))
	for _, u := range updates {
		v := Verdict{Update: u}
		deleting := u.New == ZeroID
		branch, isBranch := strings.CutPrefix(u.Ref, "refs/heads/")
		_, isTag := strings.CutPrefix(u.Ref, "refs/tags/")
		switch {
		case u.Ref == deployRef && deleting:
			v.Refuse = fmt.Sprintf("deleting the deploy branch %s is refused (choose another first: app set NS/APP deploy-branch BRANCH)", deployBranch)
		case u.Ref == deployRef:
			v.Deploy = true
		case !isBranch && !isTag:
			v.Refuse = fmt.Sprintf("%s: only branches and tags can be pushed", u.Ref)
		case deleting:
			v.Note = fmt.Sprintf("%s deleted", u.Ref)
		case isBranch:
			v.Note = fmt.Sprintf("branch %s kept, not deployed (the deploy branch is %s)", branch, deployBranch)
		default:
			v.Note = fmt.Sprintf("tag %s kept", strings.TrimPrefix(u.Ref, "refs/tags/"))
		}
		out = append(out, v)
	}
	return out
}
