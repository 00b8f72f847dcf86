package commands

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/keys"
)

type runtimeView struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Detect      []string `json:"detect"`
	Start       string   `json:"start"`
	Source      string   `json:"source"`
	BuiltOn     []string `json:"built_on"` // hosts that have its image
}

func (s *session) runtimesCommands() *cobra.Command {
	g := s.group("runtimes", "List the runtimes apps can use", "runtime")
	list := &cobra.Command{Use: "list", Short: "List runtimes", Args: noArgs}
	format := formatFlag(list)
	s.leaf(g, list, keys.RuntimesList, formatScope(format), func(cmd *cobra.Command, _ []string) error {
		list, err := s.env.Backend.Runtimes(cmd.Context(), s.inv.Principal)
		if err != nil {
			return err
		}
		var views []runtimeView
		for _, r := range list.Runtimes {
			views = append(views, runtimeView{Name: r.Name, Description: r.Description, Detect: r.Detect, Start: r.Start, Source: r.Source, BuiltOn: r.BuiltOn})
		}
		return output(cmd, *format, views, func(w io.Writer) {
			// The start commands are long shell lines: JSON has them.
			row(w, "RUNTIME", "DESCRIPTION", "DETECTS", "IMAGE", "SOURCE")
			for _, v := range views {
				image := "not built yet (built on first use)"
				if len(v.BuiltOn) > 0 {
					image = fmt.Sprintf("built on %d/%d host(s)", len(v.BuiltOn), list.Hosts)
				}
				row(w, v.Name, v.Description, strings.Join(v.Detect, ","), image, v.Source)
			}
		})
	})
	return g
}

func (s *session) hostsCommands() *cobra.Command {
	g := s.group("hosts", "List, add and manage the hosts that run containers", "host")
	s.hostsManage(g)
	list := &cobra.Command{Use: "list", Short: "List hosts (admins)", Args: noArgs}
	format := formatFlag(list)
	s.leaf(g, list, keys.HostsList, formatScope(format), func(cmd *cobra.Command, _ []string) error {
		hosts, err := s.env.Backend.Hosts(cmd.Context(), s.inv.Principal)
		if err != nil {
			return err
		}
		views := []hostView{}
		for _, h := range hosts {
			views = append(views, hostView{Name: h.Name, Address: h.Address, State: h.State, Weight: h.Weight,
				Subnet: h.Subnet, Provider: h.Provider, CPUs: h.CPUs, Containers: h.Containers,
				MemTotal: h.MemTotal, MemFree: h.MemFree, LastHeartbeat: when(h.LastHeartbeat), HostKey: h.HostKey})
		}
		return output(cmd, *format, views, func(w io.Writer) {
			row(w, "HOST", "ADDRESS", "STATE", "WEIGHT", "CONTAINERS", "MEMORY USED/FREE", "LAST HEARTBEAT")
			for _, h := range views {
				row(w, h.Name, dash(h.Address), h.State, strconv.Itoa(h.Weight), strconv.Itoa(h.Containers),
					gib(h.MemTotal-min(h.MemFree, h.MemTotal))+"/"+gib(h.MemFree), h.LastHeartbeat)
			}
			if router, err := s.env.Backend.RouterStatus(cmd.Context(), s.inv.Principal); err == nil && router != "" {
				fmt.Fprintf(w, "\nrouter: %s\n", router)
			}
		})
	})
	return g
}

type hostView struct {
	Name          string `json:"name"`
	Address       string `json:"address"`
	State         string `json:"state"` // up, down, draining
	Weight        int    `json:"weight"`
	Subnet        string `json:"subnet"`
	Provider      string `json:"provider"`
	CPUs          int    `json:"cpus"`
	Containers    int    `json:"containers"`
	MemTotal      uint64 `json:"memory_total_bytes"`
	MemFree       uint64 `json:"memory_free_bytes"`
	LastHeartbeat string `json:"last_heartbeat"`
	// The SSH host key(s) pinned at hosts add, authorized_keys lines.
	HostKey string `json:"host_key,omitempty"`
}

func gib(b uint64) string {
	return strconv.FormatFloat(float64(b)/(1<<30), 'f', 1, 64) + "G"
}
