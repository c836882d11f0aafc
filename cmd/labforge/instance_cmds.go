package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/labforge/labforge/builder"
	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/labhost"
	"github.com/labforge/labforge/internal/virt"
	"github.com/labforge/labforge/verify"
)

func newDownCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "down [NAME]",
		Short: "Destroy an instance: its domain, overlay, seed and keys",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return instance.DownNames(cmd.Context(), cmd.OutOrStdout(), []string{argOr(args, "default")}, all, builder.Holder)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every instance, and any labforge domain without one")
	return cmd
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
	if err := instance.Held(name, builder.Holder); err != nil {
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
				return inst.Login()
			}
			code, err := inst.Exec(cmd.Context(), strings.Join(args, " "), os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr())
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

func newVerifyCmd() *cobra.Command {
	var name string
	var o instance.VerifyOptions
	var report reportFlags
	cmd := &cobra.Command{
		Use:   "verify [-n NAME] [--suite FILE]",
		Short: "Run a verify suite against a running instance",
		Long: `verify runs the checks of a suite (by default the one named by the instance's
spec) over one SSH connection and prints a table, JSON or JUnit XML. It exits
non-zero when any check fails, naming the failing checks.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Load = func(suite, spec string) (*verify.Suite, error) {
				return labhost.SuiteFor(suite, spec, cmd.ErrOrStderr())
			}
			rep, err := instance.Verify(cmd.Context(), name, o)
			if err != nil {
				return err
			}
			if err := report.write(cmd.OutOrStdout(), rep); err != nil {
				return err
			}
			if err := rep.Err(); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "labforge: %s: %v\n", rep.Host, err)
				return exitError(1)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "default", "instance name")
	cmd.Flags().StringVar(&o.Suite, "suite", "", "verify suite file (default: the spec's)")
	cmd.Flags().DurationVar(&o.MaxTimeout, "timeout", 0, "give no check longer than this to pass (default: each check's own timeout)")
	report.register(cmd)
	return cmd
}

func newListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List instances with their state and SSH port",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return instance.WriteList(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
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
