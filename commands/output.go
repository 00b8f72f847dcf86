package commands

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// formatFlag adds --format to a list or info command.
func formatFlag(c *cobra.Command) *string {
	return c.Flags().String("format", "text", "output format: text or json")
}

// output writes v as JSON, or calls text with a tab-aligned writer. The
// result goes out in one write: over ssh every write is a packet, and a
// tabwriter makes one per cell.
func output(cmd *cobra.Command, format string, v any, text func(w io.Writer)) error {
	var buf bytes.Buffer
	switch format {
	case "json":
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return err
		}
	case "text":
		tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
		text(tw)
		if err := tw.Flush(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("--format must be text or json, not %q", format)
	}
	_, err := cmd.OutOrStdout().Write(buf.Bytes())
	return err
}

// checkFormat refuses a bad --format before anything runs.
func checkFormat(format string) error {
	if format != "text" && format != "json" {
		return fmt.Errorf("--format must be text or json, not %q", format)
	}
	return nil
}

func row(w io.Writer, cols ...string) {
	fmt.Fprintln(w, strings.Join(cols, "\t"))
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
