package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/labforge/labforge/internal/class"
	"github.com/labforge/labforge/internal/dashboard"
)

func newClassCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "class", Short: "Stamp out a classroom of identical hosts from one golden image"}
	cmd.AddCommand(newClassCreateCmd(g), newClassStatusCmd(), newClassVerifyCmd(), newClassResetCmd(), newClassStartCmd(), newClassStopCmd(), newClassDestroyCmd(), newClassServeCmd())
	return cmd
}

func newClassCreateCmd(g *globalFlags) *cobra.Command {
	var o class.SpecOptions
	cmd := &cobra.Command{
		Use:   "create NAME --students N [--spec SPEC] [--hosts URI,...]",
		Short: "Build the golden image (cached) and bring up one linked clone per student",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name, o.JSON, o.Out, o.Stderr = args[0], progressJSON, cmd.OutOrStdout(), os.Stderr
			return classExit(class.CreateFromSpec(cmd.Context(), o, newPrinter(o.Out, g.quiet)))
		},
	}
	cmd.Flags().StringVar(&o.SpecPath, "spec", defaultSpec, "image spec of the golden image")
	cmd.Flags().IntVar(&o.Students, "students", 0, "number of student hosts")
	cmd.Flags().StringSliceVar(&o.Hosts, "hosts", nil, "hypervisors to spread the hosts over, by free memory and CPUs: qemu:///system, qemu+ssh://[user@]host[:port]/system?keyfile=FILE&known_hosts=FILE (default: this machine)")
	cmd.Flags().IntVar(&o.Parallel, "parallel", 2, "hosts brought up at once")
	cmd.Flags().DurationVar(&o.BootTimeout, "boot-timeout", 15*time.Minute, "how long each guest may take to answer on SSH")
	cmd.Flags().BoolVar(&o.Cold, "cold", false, "boot every host from cold, neither using nor making a warm state")
	return cmd
}

// classExit ends a command whose report showed what failed with exit
// status 1, without another error line.
func classExit(failed int, err error) error {
	if err == nil && failed > 0 {
		return exitError(1)
	}
	return err
}

func newClassStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status NAME",
		Short: "Each host's hypervisor, state, SSH reachability and the host memory its guest holds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := class.Load(args[0])
			if err != nil {
				return err
			}
			return class.WriteStatus(cmd.OutOrStdout(), class.Status(cmd.Context(), c))
		},
	}
}

func newClassVerifyCmd() *cobra.Command {
	var o class.VerifyOptions
	cmd := &cobra.Command{
		Use:   "verify NAME [--junit FILE]",
		Short: "Verify every host, and that all run the same image with the same packages",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name, o.Out, o.Stderr = args[0], cmd.OutOrStdout(), cmd.ErrOrStderr()
			return classExit(class.RunVerify(cmd.Context(), o))
		},
	}
	cmd.Flags().StringVar(&o.JUnitPath, "junit", "", "write one JUnit test suite per host (and the fingerprint suite) to FILE")
	cmd.Flags().StringVar(&o.SuitePath, "suite", "", "verify suite (default: the spec's)")
	cmd.Flags().IntVar(&o.Parallel, "parallel", 2, "hosts verified at once")
	return cmd
}

func newClassResetCmd() *cobra.Command {
	o := class.ActOptions{Timeout: 15 * time.Minute}
	cmd := &cobra.Command{
		Use:   "reset NAME STUDENT...",
		Short: "Put students' hosts back to the golden image (new overlay, new keys)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name, o.Students, o.Out, o.Stderr = args[0], args[1:], cmd.OutOrStdout(), os.Stderr
			return class.Act(cmd.Context(), class.ActionReset, o)
		},
	}
	cmd.Flags().IntVar(&o.Parallel, "parallel", 2, "hosts reset at once")
	return cmd
}

func newClassStartCmd() *cobra.Command {
	o := class.ActOptions{Timeout: 15 * time.Minute}
	cmd := &cobra.Command{
		Use:   "start NAME",
		Short: "Boot the class's stopped hosts again, each on its own disk",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name, o.Out, o.Stderr = args[0], cmd.OutOrStdout(), os.Stderr
			return class.Act(cmd.Context(), class.ActionStart, o)
		},
	}
	cmd.Flags().IntVar(&o.Parallel, "parallel", 2, "hosts started at once")
	return cmd
}

func newClassStopCmd() *cobra.Command {
	var o class.ActOptions // every host at once
	cmd := &cobra.Command{
		Use:   "stop NAME",
		Short: "Shut every host of the class down, keeping the students' disks",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name, o.Out, o.Stderr = args[0], cmd.OutOrStdout(), os.Stderr
			return class.Act(cmd.Context(), class.ActionStop, o)
		},
	}
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 2*time.Minute, "how long a guest may take to power off before it is pulled")
	return cmd
}

func newClassDestroyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "destroy NAME",
		Short: "Remove every host of the class, and the class",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := class.Load(args[0])
			if err != nil {
				return err
			}
			if err := class.Destroy(cmd.Context(), c); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "class %s destroyed (%d hosts)\n", c.Name, len(c.Students))
			return nil
		},
	}
}

func newClassServeCmd() *cobra.Command {
	var o dashboard.RunOptions
	cmd := &cobra.Command{
		Use:   "serve [NAME...]",
		Short: "A live dashboard of classes in the browser: hosts, verify results, course progress, actions",
		Long: `serve shows the classes (all on this machine when none is named) as a web page:
one row per student with the host's state, how to log in, its last verify, and
the course progress its guest records (per exercise: not started, started,
failing with the checks run and hint stage, passed), updated live. Actions
(verify again, reset, start, stop) need the token it prints; read-only views
are open on loopback. Progress exports as /export.csv and /export.json.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Names, o.Out, o.Log = args, cmd.OutOrStdout(), cmd.ErrOrStderr()
			return dashboard.Run(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.Listen, "listen", "127.0.0.1:7840", "address to serve on (host:port; another than loopback makes every view need the token)")
	cmd.Flags().StringVar(&o.Token, "token", "", "the token actions need (default: a random one, printed; other users see it in ps: prefer --token-file)")
	cmd.Flags().StringVar(&o.TokenFile, "token-file", "", "read the token from this file")
	cmd.Flags().DurationVar(&o.Interval, "interval", dashboard.DefaultInterval, "how often each host is polled")
	return cmd
}
