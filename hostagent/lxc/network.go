package lxc

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
)

// ensureBridge creates the bridge if missing and gives it the gateway
// address. `ip` rather than netlink code: it is on every Debian host and
// runs once per agent start.
func ensureBridge(name string, gw netip.Addr, bits int) error {
	if _, err := net.InterfaceByName(name); err != nil {
		if out, err := run("ip", "link", "add", name, "type", "bridge"); err != nil && !strings.Contains(out, "File exists") {
			return err
		}
	}
	// A bridge without an address of its own takes the lowest MAC of its
	// ports, which changes as containers come and go; running containers
	// keep the old gateway MAC in their ARP cache and their replies go
	// nowhere until it expires. A fixed address, also on an existing
	// bridge (agents before this one did not set it).
	if _, err := run("ip", "link", "set", name, "address", bridgeMAC(name)); err != nil {
		return err
	}
	if _, err := run("ip", "addr", "replace", fmt.Sprintf("%s/%d", gw, bits), "dev", name); err != nil {
		return err
	}
	_, err := run("ip", "link", "set", name, "up")
	return err
}

// bridgeMAC is a stable locally administered unicast MAC for the bridge,
// derived from its name.
func bridgeMAC(name string) string {
	h := sha256.Sum256([]byte("upscale bridge " + name))
	h[0] = h[0]&0xfc | 0x02
	return net.HardwareAddr(h[:6]).String()
}

// natTable is the nftables table holding one bridge's masquerade rule: its
// own table, so adding is idempotent and removal cannot touch anything
// else. Table names cannot contain '-'.
func natTable(bridge string) string {
	return "upscale_" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, bridge)
}

func ensureNAT(bridge string, subnet netip.Prefix) error {
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enable forwarding: %w", err)
	}
	if path, err := exec.LookPath("nft"); err == nil {
		t := natTable(bridge)
		// Declare, delete, recreate: one atomic transaction whether or not
		// the table existed.
		script := fmt.Sprintf(`table ip %[1]s
delete table ip %[1]s
table ip %[1]s {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr %[2]s ip daddr != %[2]s masquerade
	}
}
`, t, subnet)
		cmd := exec.Command(path, "-f", "-")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("nft: %w: %s", err, bytes.TrimSpace(out))
		}
		return nil
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return errors.New("neither nft nor iptables is installed")
	}
	rule := iptablesRule(subnet)
	if _, err := run("iptables", append([]string{"-t", "nat", "-C"}, rule...)...); err == nil {
		return nil
	}
	_, err := run("iptables", append([]string{"-t", "nat", "-A"}, rule...)...)
	return err
}

func iptablesRule(subnet netip.Prefix) []string {
	return []string{"POSTROUTING", "-s", subnet.String(), "!", "-d", subnet.String(), "-j", "MASQUERADE"}
}

// RemoveNetwork deletes the bridge and the NAT rule New set up, for
// uninstalling and for tests. Containers still attached lose their
// network.
func (r *Runtime) RemoveNetwork() error {
	var errs []error
	if r.cfg.NAT {
		if _, err := exec.LookPath("nft"); err == nil {
			if out, err := run("nft", "delete", "table", "ip", natTable(r.cfg.Bridge)); err != nil && !strings.Contains(out, "No such file") {
				errs = append(errs, err)
			}
		} else if _, err := exec.LookPath("iptables"); err == nil {
			for {
				if _, err := run("iptables", append([]string{"-t", "nat", "-D"}, iptablesRule(r.cfg.Subnet)...)...); err != nil {
					break
				}
			}
		}
	}
	if _, err := net.InterfaceByName(r.cfg.Bridge); err == nil {
		if _, err := run("ip", "link", "del", r.cfg.Bridge); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}
