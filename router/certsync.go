// Bringing the running HAProxy's certificates to the files, through the
// runtime API: new ssl cert, set ssl cert, commit ssl cert, add and del ssl
// crt-list, del ssl cert. No reload: connections in flight keep theirs,
// the next handshake gets the new one.

package router

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/upscalehq/upscale/certbundle"
)

// syncCerts makes the running HAProxy (started if it is down: it then
// reads the files) serve what the files say. Certificates come before the
// names in certs.map that make them live (redirects start once HTTPS
// answers with the right certificate), and go after. The caller holds the
// lock.
func (r *Router) syncCerts(ctx context.Context) error {
	p, launched, err := r.ensure(ctx)
	if err != nil || launched {
		return err
	}
	pid := p.worker
	entries, err := r.readList()
	if err != nil {
		return err
	}
	var lines []crtLine
	var loaded loadedCerts
	if r.httpsBind != "" {
		out, err := r.worker(ctx, pid, "show ssl cert")
		if err != nil {
			return err
		}
		if loaded, err = parseLoadedCerts(out); err != nil {
			return err
		}
		// A transaction left open by a process that died mid-install
		// would block every other one.
		for f := range loaded.open {
			if err := r.expect(ctx, pid, "abort ssl cert "+f, "aborted"); err != nil {
				return err
			}
		}
		for _, f := range append([]string{r.tlsPath("pending.pem")}, fileNames(entries)...) {
			if err := r.loadCert(ctx, pid, f, loaded.files[f]); err != nil {
				return err
			}
		}
		if lines, err = r.crtLines(ctx, pid); err != nil {
			return err
		}
		for _, e := range entries {
			if err := r.listCert(ctx, pid, e, lines); err != nil {
				return err
			}
		}
	}

	out, err := r.worker(ctx, pid, "show map "+r.tlsPath("certs.map"))
	if err != nil {
		return err
	}
	cur, err := parseMap(out)
	if err != nil {
		return err
	}
	curMap := map[string]string{}
	for _, e := range cur {
		if checkCertName(e.key) != nil {
			// Not ours, and unsafe on a command line: the next reload
			// drops it.
			continue
		}
		if _, dup := curMap[e.key]; dup {
			e.value = "" // entered twice: syncMap starts it over
		}
		curMap[e.key] = e.value
	}
	err = r.syncMap(ctx, pid, r.tlsPath("certs.map"), curMap, r.liveNames(entries), func(name, id string) {
		if id == "" {
			r.cfg.Log.Info("name no longer has a live certificate", "name", name)
		}
	})
	if err != nil || r.httpsBind == "" {
		return err
	}

	// What the files no longer name: out of the crt-list, then forgotten.
	want := fileNames(entries)
	for _, l := range lines {
		if !slices.Contains(want, l.file) {
			if err := r.expect(ctx, pid, fmt.Sprintf("del ssl crt-list %s %s:%d", r.tlsPath("certs.list"), l.file, l.line), "deleted"); err != nil {
				return err
			}
		}
	}
	certsDir := r.tlsPath("certs") + "/"
	for _, f := range slices.Sorted(maps.Keys(loaded.files)) {
		if strings.HasPrefix(f, certsDir) && !slices.Contains(want, f) {
			if err := r.expect(ctx, pid, "del ssl cert "+f, "deleted"); err != nil {
				return err
			}
		}
	}
	return nil
}

func fileNames(entries []certEntry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.file
	}
	return out
}

// loadCert makes HAProxy hold file's certificate under file's name: made
// when new, replaced when its fingerprint differs. Replacing is atomic in
// HAProxy: a handshake gets the old or the new one, never none.
func (r *Router) loadCert(ctx context.Context, pid int, file string, exists bool) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	leaf, err := certbundle.FirstCert(data)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if exists {
		if fp, err := r.runtimeFingerprint(ctx, pid, file); err == nil && fp == fingerprint(leaf.Raw) {
			return nil
		}
	} else if err := r.expect(ctx, pid, "new ssl cert "+file, "New empty certificate store"); err != nil {
		return err
	}
	if err := r.expect(ctx, pid, "set ssl cert "+file+" <<\n"+payload(string(data)), "Transaction "); err != nil {
		r.worker(ctx, pid, "abort ssl cert "+file)
		if !exists {
			r.worker(ctx, pid, "del ssl cert "+file)
		}
		return err
	}
	if err := r.expect(ctx, pid, "commit ssl cert "+file, "Success!"); err != nil {
		r.worker(ctx, pid, "abort ssl cert "+file)
		return err
	}
	r.cfg.Log.Info("certificate loaded into haproxy", "file", file, "subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
	return nil
}

// listCert gives e's file exactly e's names in the crt-list: a new line
// first, then the old ones deleted, so that a name kept never goes
// without.
func (r *Router) listCert(ctx context.Context, pid int, e certEntry, lines []crtLine) error {
	var old []crtLine
	for _, l := range lines {
		if l.file == e.file {
			old = append(old, l)
		}
	}
	if len(old) == 1 && slices.Equal(old[0].names, e.names) {
		return nil
	}
	list := r.tlsPath("certs.list")
	if err := r.expect(ctx, pid, "add ssl crt-list "+list+" <<\n"+payload(e.file+" "+strings.Join(e.names, " ")), "Success!"); err != nil {
		return err
	}
	for _, l := range old {
		if err := r.expect(ctx, pid, fmt.Sprintf("del ssl crt-list %s %s:%d", list, l.file, l.line), "deleted"); err != nil {
			return err
		}
	}
	return nil
}

// payload ends a CLI payload: its text, then the empty line that closes
// it (the master CLI adds the final newline).
func payload(s string) string { return strings.TrimRight(s, "\n") + "\n" }

// expect runs a runtime API command whose answer says it worked with ok
// somewhere in it; any other answer is HAProxy's error.
func (r *Router) expect(ctx context.Context, pid int, cmd, ok string) error {
	out, err := r.worker(ctx, pid, cmd)
	if err != nil {
		return err
	}
	if !strings.Contains(out, ok) {
		first, _, _ := strings.Cut(cmd, "\n")
		return fmt.Errorf("haproxy %q: %s", first, truncate(strings.Join(nonEmptyLines(out), "; ")))
	}
	return nil
}
