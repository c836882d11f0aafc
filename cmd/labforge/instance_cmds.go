package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/labforge/labforge/builder"
	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/labhost"
	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/virt"
	"github.com/labforge/labforge/internal/warm"
	"github.com/labforge/labforge/verify"
)

func newDownCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "down [NAME]",
		Short: "Destroy an instance: its domain, overlay, seed and keys",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			names := []string{"default"}
			if len(args) == 1 {
				names = args
			}
			for _, n := range names {
				if err := instance.ValidName(n); err != nil {
					return err
				}
				if err := heldByRun(n); err != nil {
					return err
				}
			}
			conn, err := virt.Connect(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer conn.Close()
			if all {
				if names, err = allInstances(conn); err != nil {
					return err
				}
				names = slices.DeleteFunc(names, func(n string) bool {
					if h := holder(n); h != "" {
						fmt.Fprintf(cmd.OutOrStdout(), "%s: left to %s\n", n, h)
						return true
					}
					return false
				})
			}
			var errs []error
			for _, n := range names {
				if err := instance.Down(conn, n); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: down\n", n)
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every instance, and any labforge domain without one")
	return cmd
}

// holder names the other labforge that runs the guest called name and
// removes it when done (a running build, or one making a warm state from
// it), or is "".
func holder(name string) string {
	if spec, ok := strings.CutPrefix(name, builder.BuildGuestPrefix); ok && builder.Building(paths.Cache(), spec) {
		return fmt.Sprintf("the build of %s that runs it (it goes when the build ends)", spec)
	}
	if warm.Making(name) {
		return "the labforge making a warm state from it (it goes when that is done)"
	}
	return ""
}

// heldByRun refuses a guest that holder names.
func heldByRun(name string) error {
	if h := holder(name); h != "" {
		return fmt.Errorf("%s: held by %s", name, h)
	}
	return nil
}

// allInstances is every instance record plus every labforge domain,
// so that leftovers of a killed run are found too.
func allInstances(conn *virt.Conn) ([]string, error) {
	seen := map[string]bool{}
	names, err := instance.List()
	if err != nil {
		return nil, err
	}
	doms, err := conn.List(instance.DomainPrefix)
	if err != nil {
		return nil, err
	}
	for _, d := range doms {
		names = append(names, strings.TrimPrefix(d, instance.DomainPrefix))
	}
	var out []string
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

func newStartCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "start [NAME]",
		Short: "Boot a stopped instance again on its own disk (after a host reboot or a poweroff)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return onInstance(cmd, args, func(ctx context.Context, conn *virt.Conn, name string) (string, error) {
				t0 := time.Now()
				inst, client, err := instance.Start(ctx, conn, name, timeout)
				if err != nil {
					return "", err
				}
				client.Close()
				return fmt.Sprintf("up in %s; log in: %s", time.Since(t0).Round(time.Second), inst.SSHCommand()), nil
			})
		},
	}
	cmd.Flags().DurationVar(&timeout, "boot-timeout", 15*time.Minute, "how long to wait for SSH")
	return cmd
}

func newStopCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "stop [NAME]",
		Short: "Shut an instance down cleanly, keeping its disk (labforge start boots it again)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return onInstance(cmd, args, func(ctx context.Context, conn *virt.Conn, name string) (string, error) {
				return "stopped", instance.Stop(ctx, conn, name, timeout)
			})
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long the guest may take to power off before it is pulled")
	return cmd
}

// onInstance runs fn on the instance named in args (default "default")
// once its record is found, and prints what fn says of it.
func onInstance(cmd *cobra.Command, args []string, fn func(context.Context, *virt.Conn, string) (string, error)) error {
	name := argOr(args, "default")
	if err := heldByRun(name); err != nil {
		return err
	}
	if _, err := instance.Load(name); err != nil {
		return err
	}
	conn, err := virt.Connect(cmd.Context(), true)
	if err != nil {
		return err
	}
	defer conn.Close()
	what, err := fn(cmd.Context(), conn, name)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", name, what)
	return nil
}

func argOr(args []string, def string) string {
	if len(args) > 0 {
		return args[0]
	}
	return def
}

func newSSHCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "ssh [-n NAME] [-- COMMAND...]",
		Short: "Log in to an instance, or run one command on it",
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := instance.Load(name)
			if err != nil {
				return err
			}
			if len(args) == 0 {
				return execSSH(inst)
			}
			client, err := inst.Dial(cmd.Context(), 30*time.Second)
			if err != nil {
				return err
			}
			defer client.Close()
			code, err := client.Stream(cmd.Context(), strings.Join(args, " "), os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if code != 0 {
				return exitError(code)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "default", "instance name")
	return cmd
}

// execSSH hands the terminal to the system ssh client, set up with the
// instance's key and pinned host key.
func execSSH(inst *instance.Instance) error {
	ssh, err := exec.LookPath("ssh")
	if err != nil {
		return fmt.Errorf("an interactive login needs the ssh client (apt-get install openssh-client); `labforge ssh -- CMD` works without it")
	}
	return syscall.Exec(ssh, []string{"ssh", "-F", inst.SSHConfigPath(), inst.Domain}, os.Environ())
}

func newVerifyCmd() *cobra.Command {
	var name, suitePath string
	var maxTimeout time.Duration
	var report reportFlags
	cmd := &cobra.Command{
		Use:   "verify [-n NAME] [--suite FILE]",
		Short: "Run a verify suite against a running instance",
		Long: `verify runs the checks of a suite (by default the one named by the instance's
spec) over one SSH connection and prints a table, JSON or JUnit XML. It exits
non-zero when any check fails, naming the failing checks.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := instance.Load(name)
			if err != nil {
				return err
			}
			if suitePath == "" {
				suitePath = inst.VerifyOn
			}
			if suitePath == "" {
				return fmt.Errorf("instance %s has no verify suite; pass --suite FILE", name)
			}
			suite, err := labhost.SuiteFor(suitePath, inst.Spec, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			capTimeouts(suite, maxTimeout)
			client, err := inst.Dial(cmd.Context(), time.Minute)
			if err != nil {
				return err
			}
			defer client.Close()
			rep := verify.Run(cmd.Context(), instance.RootRunner{Client: client}, suite, verify.Options{Batch: true})
			rep.Host = inst.Name
			if err := report.write(cmd.OutOrStdout(), rep); err != nil {
				return err
			}
			if err := rep.Err(); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "labforge: %s: %v\n", inst.Name, err)
				return exitError(1)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "default", "instance name")
	cmd.Flags().StringVar(&suitePath, "suite", "", "verify suite file (default: the spec's)")
	cmd.Flags().DurationVar(&maxTimeout, "timeout", 0, "give no check longer than this to pass (default: each check's own timeout)")
	report.register(cmd)
	return cmd
}

// capTimeouts shortens every check's retry window to at most max: on a
// host already booted there is nothing to wait for.
func capTimeouts(s *verify.Suite, max time.Duration) {
	if max <= 0 {
		return
	}
	limit := func(d *verify.Duration) {
		if *d == 0 || time.Duration(*d) > max {
			*d = verify.Duration(max)
		}
	}
	limit(&s.Defaults.Timeout)
	for i := range s.Checks {
		if s.Checks[i].Timeout != 0 {
			limit(&s.Checks[i].Timeout)
		}
	}
}

func newListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List instances with their state and SSH port",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := virt.Connect(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer conn.Close()
			names, err := allInstances(conn)
			if err != nil {
				return err
			}
			// A class student on another hypervisor is asked there, over
			// one connection per host.
			remote := map[string]*virt.Conn{}
			defer func() {
				for _, c := range remote {
					if c != nil {
						c.Close()
					}
				}
			}()
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSTATE\tSSH\tHOST\tACCEL\tIMAGE")
			for _, n := range names {
				inst, lerr := instance.Load(n)
				on, host := conn, "local"
				if lerr == nil && inst.Host != "" {
					host = virt.Label(inst.Host)
					c, seen := remote[inst.Host]
					if !seen {
						if c, err = virt.Open(cmd.Context(), inst.Host); err != nil {
							fmt.Fprintf(os.Stderr, "labforge: %s: %v\n", host, err)
						}
						remote[inst.Host] = c
					}
					on = c
				}
				state := "unknown"
				if on != nil {
					state = "stopped"
					if on.Running(instance.DomainPrefix + n) {
						state = "running"
					}
				}
				if lerr != nil {
					fmt.Fprintf(tw, "%s\t%s (stale: no record)\t-\t%s\t-\t-\n", n, state, host)
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t127.0.0.1:%d\t%s\t%s\t%s\n", n, state, inst.SSHPort, host, inst.Accel, inst.Image)
			}
			return tw.Flush()
		},
	}
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print labforge's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "labforge %s\n", version)
		},
	}
}
