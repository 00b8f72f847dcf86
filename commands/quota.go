package commands

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/appspec"
	"github.com/upscalehq/upscale/backend"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
)

// quotaKeys are the quotas `namespace quota set` takes, in the order
// namespace info shows them.
var quotaKeys = []string{"apps", "instances", "memory", "exec"}

// Bounds of a quota a namespace sets: big enough for any one platform,
// small enough that sums of them cannot overflow.
const (
	maxQuotaCount  = 1_000_000
	minQuotaMemory = 64 << 20
	maxQuotaMemory = 1 << 50
)

// quotaUse is one quota of a namespace as namespace info shows it.
type quotaUse struct {
	Used    int64 `json:"used"`
	Limit   int64 `json:"limit"`   // 0: no limit
	Default bool  `json:"default"` // the operator's default applies
}

type namespaceInfoView struct {
	Name      string   `json:"name"`
	CreatedAt string   `json:"created_at"`
	Apps      quotaUse `json:"apps"`
	Instances quotaUse `json:"instances"`
	Memory    quotaUse `json:"memory_bytes"`
	Exec      quotaUse `json:"exec"`
}

func (s *session) namespaceQuotaCommands(g *cobra.Command) {
	info := &cobra.Command{
		Use:   "info NAME",
		Short: "Show a namespace: its quotas and what it uses of them",
		Long: "Show a namespace's quotas (apps, instances of every app and process type, the memory limits of\n" +
			"those instances added up, app exec commands running at once) and what it uses of each now.",
		Args: argsN(1, "one NAME"),
	}
	format := formatFlag(info)
	var ns string
	nsScope := func(_ *cobra.Command, args []string) (scope, error) {
		ns = args[0]
		if err := names.Check("namespace", ns); err != nil {
			return scope{}, err
		}
		return scope{target: keys.Target{Namespace: ns}, denied: namespaceNotFound(ns)}, nil
	}
	s.leaf(g, info, keys.NamespaceInfo, func(cmd *cobra.Command, args []string) (scope, error) {
		if err := checkFormat(*format); err != nil {
			return scope{}, err
		}
		return nsScope(cmd, args)
	}, func(cmd *cobra.Command, _ []string) error {
		u, err := s.env.Backend.NamespaceInfo(cmd.Context(), s.inv.Principal, ns)
		if err != nil {
			return err
		}
		n, own, inForce, use := u.Namespace, u.Own, u.InForce, u.Use
		v := namespaceInfoView{Name: n.Name, CreatedAt: when(n.CreatedAt),
			Apps:      quotaUse{int64(use.Apps), int64(inForce.Apps), own.Apps == 0},
			Instances: quotaUse{int64(use.Instances), int64(inForce.Instances), own.Instances == 0},
			Memory:    quotaUse{use.Memory, inForce.Memory, own.Memory == 0},
			Exec:      quotaUse{int64(use.Exec), int64(inForce.Exec), own.Exec == 0},
		}
		return output(cmd, *format, v, func(w io.Writer) {
			row(w, "Namespace:", v.Name)
			row(w, "Created:", v.CreatedAt)
			row(w, "")
			row(w, "QUOTA", "USED", "LIMIT")
			for i, q := range []quotaUse{v.Apps, v.Instances, v.Memory, v.Exec} {
				used, limit := strconv.FormatInt(q.Used, 10), strconv.FormatInt(q.Limit, 10)
				if quotaKeys[i] == "memory" {
					used, limit = appspec.FormatSize(q.Used), appspec.FormatSize(q.Limit)
					if q.Used == 0 {
						used = "0"
					}
				}
				if q.Limit == 0 {
					limit = "none"
				}
				if q.Default {
					limit += " (default)"
				}
				row(w, quotaKeys[i], used, limit)
			}
		})
	})

	quota := s.group("quota", "Set a namespace's quotas (admins)")
	g.AddCommand(quota)
	set := &cobra.Command{
		Use:   "set NAME KEY=VALUE...",
		Short: "Set a namespace's quotas: apps, instances, memory, exec (admins)",
		Long: "Set some or all of a namespace's quotas; the others stay as they are. VALUE is a whole number\n" +
			"(memory: a size such as 8G or 512M), or default for the operator's default. A namespace over a\n" +
			"quota keeps what runs; what would take more is refused.",
		Example: "  " + s.inv.Prog + " namespace quota set acme apps=20 instances=40 memory=8G exec=4\n" +
			"  " + s.inv.Prog + " namespace quota set acme memory=default",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return fmt.Errorf("%s needs NAME and at least one KEY=VALUE (keys: %s)", cmd.CommandPath(), strings.Join(quotaKeys, ", "))
			}
			return nil
		},
	}
	var change backend.QuotaChange
	s.leaf(quota, set, keys.NamespaceQuota, func(cmd *cobra.Command, args []string) (scope, error) {
		sc, err := nsScope(cmd, args)
		if err != nil {
			return sc, err
		}
		change, err = parseQuota(args[1:])
		return sc, err
	}, func(cmd *cobra.Command, _ []string) error {
		q, inForce, err := s.env.Backend.SetQuota(cmd.Context(), s.inv.Principal, ns, change)
		if err != nil {
			return err
		}
		var parts []string
		for _, k := range quotaKeys {
			own, limit := quotaValue(q, k), quotaValue(inForce, k)
			v := strconv.FormatInt(limit, 10)
			if k == "memory" && limit > 0 {
				v = appspec.FormatSize(limit)
			}
			if limit == 0 {
				v = "none"
			}
			if own == 0 {
				v += " (default)"
			}
			parts = append(parts, k+"="+v)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Quotas of namespace %s: %s\n", ns, strings.Join(parts, " "))
		return nil
	})
}

func quotaValue(q backend.Quota, key string) int64 {
	switch key {
	case "apps":
		return int64(q.Apps)
	case "instances":
		return int64(q.Instances)
	case "memory":
		return q.Memory
	}
	return int64(q.Exec)
}

// parseQuota reads KEY=VALUE pairs of namespace quota set.
func parseQuota(args []string) (backend.QuotaChange, error) {
	var c backend.QuotaChange
	seen := map[string]bool{}
	for _, a := range args {
		key, value, ok := strings.Cut(a, "=")
		if !ok {
			return c, usagef("%s: write each quota as KEY=VALUE, such as instances=40 (keys: %s)", names.Quote(msgtext.Truncate(a, 40)), strings.Join(quotaKeys, ", "))
		}
		if !slices.Contains(quotaKeys, key) {
			return c, fmt.Errorf("%s is not a quota; the quotas are %s", names.Quote(msgtext.Truncate(key, 40)), strings.Join(quotaKeys, ", "))
		}
		if seen[key] {
			return c, fmt.Errorf("quota %s is given twice", key)
		}
		seen[key] = true
		var n int64
		switch {
		case value == "default":
		case key == "memory":
			m, err := appspec.ParseSize(value)
			if err != nil || m < minQuotaMemory || m > maxQuotaMemory {
				return c, fmt.Errorf("memory=%s: want a size from 64M to %s such as 8G or 512M, or default", msgtext.Truncate(value, 40), appspec.FormatSize(maxQuotaMemory))
			}
			n = m
		default:
			v, err := strconv.ParseInt(value, 10, 64)
			if err != nil || v < 1 || v > maxQuotaCount {
				return c, fmt.Errorf("%s=%s: want a whole number from 1 to %d, or default", key, msgtext.Truncate(value, 40), maxQuotaCount)
			}
			n = v
		}
		switch key {
		case "apps":
			c.Apps = ptrInt(int(n))
		case "instances":
			c.Instances = ptrInt(int(n))
		case "memory":
			c.Memory = &n
		case "exec":
			c.Exec = ptrInt(int(n))
		}
	}
	return c, nil
}

func ptrInt(n int) *int { return &n }

// quotaError is app create's refusal over the apps quota, with the
// command that raises it as this transport spells it.
func (s *session) quotaError(err error) error {
	var q *backend.QuotaError
	if !errors.As(err, &q) {
		return err
	}
	return errors.New(strings.Replace(err.Error(), "raises it with: namespace quota", "raises it with: "+s.inv.Prog+" namespace quota", 1))
}
