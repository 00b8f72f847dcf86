package commands

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/backend"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
)

// hostsManage adds the admin-only host commands to g.
func (s *session) hostsManage(g *cobra.Command) {
	say := func(cmd *cobra.Command) func(string) {
		return func(l string) { fmt.Fprintln(cmd.OutOrStdout(), l) }
	}
	admin := func(*cobra.Command, []string) (scope, error) { return scope{}, nil }

	add := &cobra.Command{
		Use:   "add --host ADDRESS -u USER -i IDENTITY --host-key KEY",
		Short: "Install an agent on a Debian 12 machine over SSH and add it (admins)",
		Long: "Install an agent on an existing Debian 12 machine over SSH and add it as a host.\n\n" +
			"The user must be root or have passwordless sudo. Locally, -i is the path of the private key;\n" +
			"over ssh, give the key on stdin: ssh upscale@host hosts add --host 10.0.0.231 -u admin -i - < id_ed25519\n\n" +
			"The machine's SSH host key is checked on every connection: give it with --host-key (as\n" +
			"ssh-keyscan -t ed25519 10.0.0.231 prints it, checked out of band, e.g. on the machine's console)\n" +
			"or --known-hosts FILE; --trust-host-key accepts the key the machine presents now and prints it.\n" +
			"Over ssh, quote the key twice: --host-key \"'ssh-ed25519 AAAA...'\"",
		Args: func(cmd *cobra.Command, args []string) error {
			// ssh joins its arguments with spaces: a key quoted once
			// arrives as several words.
			if len(args) > 0 && cmd.Flags().Changed("host-key") {
				return fmt.Errorf("--host-key takes the key as one argument; over ssh, quote it twice: --host-key \"'ssh-ed25519 AAAA...'\" (got %s after it)", names.Quote(strings.Join(args, " ")))
			}
			return noArgs(cmd, args)
		},
	}
	var r backend.NewHost
	var identity string
	add.Flags().StringVar(&r.Address, "host", "", "address of the machine (IP or name, optional :port)")
	add.Flags().StringVarP(&r.User, "user", "u", "root", "SSH user: root, or one with passwordless sudo")
	add.Flags().StringVarP(&identity, "identity", "i", "", "private key file, or - for stdin")
	add.Flags().StringVar(&r.Name, "name", "", "host name (default: from the address)")
	add.Flags().IntVar(&r.Weight, "weight", 1, "share of containers relative to other hosts")
	add.Flags().StringVar(&r.Dir, "dir", "", "install directory on the machine (default /opt/upscale-agent)")
	add.Flags().StringArrayVar(&r.HostKeys, "host-key", nil, "the machine's SSH host key, 'ssh-ed25519 AAAA...' (repeat for several)")
	add.Flags().StringVar(&r.KnownHosts, "known-hosts", "", "a known_hosts file, on the server's machine, that lists the machine's key")
	add.Flags().BoolVar(&r.TrustHostKey, "trust-host-key", false, "accept the key the machine presents now, unverified (trust on first use)")
	s.leaf(g, add, keys.HostsManage, admin, func(cmd *cobra.Command, _ []string) error {
		r.Identity = func() ([]byte, error) { return s.identity(cmd, identity) }
		err := s.env.Backend.AddHost(cmd.Context(), s.inv.Principal, r, say(cmd))
		var bad *backend.HostKeyError
		if errors.As(err, &bad) {
			return fmt.Errorf("--host-key: %w", err)
		}
		return err
	})

	create := &cobra.Command{
		Use:   "create --provider ec2 --ami AMI",
		Short: "Start an EC2 instance that installs itself as a host (admins)",
		Long:  "Start an EC2 instance (standard AWS credential chain) whose first boot installs an agent and joins.",
		Args:  noArgs,
	}
	var cr backend.NewEC2Host
	var provider string
	create.Flags().StringVar(&provider, "provider", "", "where: ec2")
	create.Flags().StringVar(&cr.Name, "name", "", "host name (default: ec2-RANDOM)")
	create.Flags().IntVar(&cr.Weight, "weight", 1, "share of containers relative to other hosts")
	create.Flags().StringVar(&cr.Region, "region", "", "AWS region (default: from the AWS configuration)")
	create.Flags().StringVar(&cr.InstanceType, "instance-type", "t3.small", "instance type")
	create.Flags().StringVar(&cr.AMI, "ami", "", "a Debian 12 AMI id (required)")
	create.Flags().StringVar(&cr.Subnet, "subnet", "", "VPC subnet id")
	create.Flags().StringVar(&cr.KeyName, "key-name", "", "EC2 key pair for your own SSH access")
	create.Flags().StringVar(&cr.Endpoint, "endpoint", "", "EC2 endpoint URL (default: AWS)")
	s.leaf(g, create, keys.HostsManage, admin, func(cmd *cobra.Command, _ []string) error {
		if provider != "ec2" {
			return fmt.Errorf("--provider must be ec2, not %s", names.Quote(provider))
		}
		if cr.AMI == "" {
			return errors.New("hosts create needs --ami (a Debian 12 AMI)")
		}
		return s.env.Backend.CreateHost(cmd.Context(), s.inv.Principal, cr, say(cmd))
	})

	set := &cobra.Command{Use: "set NAME weight=W", Short: "Change a host's weight (admins)", Args: cobra.RangeArgs(2, 3)}
	s.leaf(g, set, keys.HostsManage, admin, func(cmd *cobra.Command, args []string) error {
		k, v, ok := strings.Cut(args[1], "=")
		if len(args) == 3 {
			k, v, ok = args[1], args[2], true
		}
		if !ok || k != "weight" {
			return fmt.Errorf("hosts set takes weight=W, not %s", names.Quote(args[1]))
		}
		w, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("weight must be a whole number, not %s", names.Quote(v))
		}
		if err := s.env.Backend.SetHostWeight(cmd.Context(), s.inv.Principal, args[0], w); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Host %s now has weight %d.\n", args[0], w)
		return nil
	})

	drain := &cobra.Command{Use: "drain NAME", Short: "Move every instance off a host without dropping requests (admins)", Args: argsN(1, "a host NAME")}
	force := drain.Flags().Bool("force", false, "drain even the last host an app can run on (its instances stop)")
	s.leaf(g, drain, keys.HostsManage, admin, func(cmd *cobra.Command, args []string) error {
		return s.env.Backend.DrainHost(cmd.Context(), s.inv.Principal, args[0], *force, say(cmd))
	})

	for _, c := range []struct {
		use, short string
		run        func(cmd *cobra.Command, name string) error
	}{
		{"remove NAME", "Forget a drained host; its agent stops (admins)", func(cmd *cobra.Command, name string) error {
			return s.env.Backend.RemoveHost(cmd.Context(), s.inv.Principal, name, say(cmd))
		}},
		{"destroy NAME", "Remove a drained EC2 host and terminate its instance (admins)", func(cmd *cobra.Command, name string) error {
			return s.env.Backend.DestroyHost(cmd.Context(), s.inv.Principal, name, say(cmd))
		}},
	} {
		s.leaf(g, &cobra.Command{Use: c.use, Short: c.short, Args: argsN(1, "a host NAME")}, keys.HostsManage, admin, func(cmd *cobra.Command, args []string) error {
			return c.run(cmd, args[0])
		})
	}

	rebalance := &cobra.Command{Use: "rebalance", Short: "Even out instances across hosts (admins)", Args: noArgs}
	dry := rebalance.Flags().Bool("dry-run", false, "only say what would move")
	s.leaf(g, rebalance, keys.HostsManage, admin, func(cmd *cobra.Command, _ []string) error {
		return s.env.Backend.Rebalance(cmd.Context(), s.inv.Principal, *dry, say(cmd))
	})

	bootstrap := &cobra.Command{Use: "bootstrap NAME", Hidden: true, Args: argsN(1, "a host NAME")}
	var host string
	s.leaf(g, bootstrap, keys.HostsBootstrap, func(_ *cobra.Command, args []string) (scope, error) {
		host = args[0]
		return scope{target: keys.Target{Host: host}, denied: "not allowed"}, names.Check("host", host)
	}, func(cmd *cobra.Command, _ []string) error {
		return s.env.Backend.BootstrapHost(cmd.Context(), s.inv.Principal, host, cmd.OutOrStdout())
	})
}

// identity reads an SSH private key: from stdin ("-"), or, for the local
// operator only, from a file on this machine. Over ssh a path would make
// the server read its own files.
func (s *session) identity(cmd *cobra.Command, path string) ([]byte, error) {
	const max = 64 << 10
	switch {
	case path == "" || path == "-":
		b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), max+1))
		if err != nil {
			return nil, err
		}
		if len(b) == 0 {
			return nil, errors.New("no identity: give -i FILE locally, or -i - with the private key on stdin")
		}
		if len(b) > max {
			return nil, errors.New("the identity on stdin is over 64 KiB; it is not a private key")
		}
		return b, nil
	case s.inv.Principal.Fingerprint != "":
		return nil, errors.New("over ssh, pass the private key on stdin: -i - < KEYFILE")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the identity: %w", err)
	}
	return b, nil
}
