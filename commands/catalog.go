package commands

import (
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/hostagent"
	"github.com/upscalehq/upscale/keys"
)

type runtimeView struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Detect      []string `json:"detect"`
	Start       string   `json:"start"`
	Source      string   `json:"source"`
}

func (s *session) runtimesCommands() *cobra.Command {
	g := s.group("runtimes", "List the runtimes apps can use", "runtime")
	list := &cobra.Command{Use: "list", Short: "List runtimes", Args: noArgs}
	format := formatFlag(list)
	s.leaf(g, list, keys.RuntimesList, formatScope(format), func(cmd *cobra.Command, _ []string) error {
		var views []runtimeView
		for _, r := range s.env.Catalog.All() {
			views = append(views, runtimeView{Name: r.Name, Description: r.Description, Detect: r.Detect, Start: r.Start, Source: r.Source})
		}
		return output(cmd, *format, views, func(w io.Writer) {
			// The start commands are long shell lines: JSON has them.
			row(w, "RUNTIME", "DESCRIPTION", "DETECTS", "SOURCE")
			for _, v := range views {
				row(w, v.Name, v.Description, strings.Join(v.Detect, ","), v.Source)
			}
		})
	})
	return g
}

func (s *session) hostsCommands() *cobra.Command {
	g := s.group("hosts", "List the hosts that run containers", "host")
	list := &cobra.Command{Use: "list", Short: "List hosts (admins)", Args: noArgs}
	format := formatFlag(list)
	s.leaf(g, list, keys.HostsList, formatScope(format), func(cmd *cobra.Command, _ []string) error {
		hosts := []hostagent.Info{s.env.Host()}
		return output(cmd, *format, hosts, func(w io.Writer) {
			row(w, "HOST", "ADDRESS", "STATE", "CPUS", "MEMORY AVAILABLE/TOTAL")
			for _, h := range hosts {
				row(w, h.Name, dash(h.Address), h.State, strconv.Itoa(h.CPUs), gib(h.MemFree)+"/"+gib(h.MemTotal))
			}
		})
	})
	return g
}

func gib(b uint64) string {
	return strconv.FormatFloat(float64(b)/(1<<30), 'f', 1, 64) + "G"
}
