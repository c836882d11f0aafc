package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/labforge/labforge/images"
	"github.com/labforge/labforge/internal/labhost"
)

type upFlags struct {
	name        string
	bootTimeout time.Duration
	noVerify    bool
	cold        bool
	sshPort     int // 0: a free one
	report      reportFlags
	build       buildFlags
}

func newUpCmd(g *globalFlags) *cobra.Command {
	f := &upFlags{}
	cmd := &cobra.Command{
		Use:   "up [SPEC]",
		Short: "Build (if not cached), boot and verify a lab host",
		Long: `up builds the spec's image unless it is cached, brings up a copy-on-write
overlay of it through libvirt, waits for SSH and runs the spec's verify suite.

The first up of an image boots it once, waits until its suite passes and saves
that host's memory (a warm state, in the cache); every later up restores from
it in seconds and gives the host its own keys, name, machine-id, clock and
random seed. Where no state can be used, up says why and boots from cold.
Ctrl-C at any point leaves no domain and no files behind.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := loadSpec(args)
			if err != nil {
				return err
			}
			return runUp(cmd.Context(), cmd.OutOrStdout(), spec, f, g)
		},
	}
	cmd.Flags().StringVarP(&f.name, "name", "n", "default", "instance name")
	cmd.Flags().DurationVar(&f.bootTimeout, "boot-timeout", 10*time.Minute, "how long the guest may take to answer on SSH")
	cmd.Flags().BoolVar(&f.noVerify, "no-verify", false, "skip the verify suite")
	cmd.Flags().BoolVar(&f.cold, "cold", false, "boot from cold, neither using nor making a warm state")
	cmd.Flags().IntVar(&f.sshPort, "ssh-port", 0, "forward this port on 127.0.0.1 to the guest's SSH (default: a free one)")
	f.report.register(cmd)
	f.build.register(cmd)
	return cmd
}

func runUp(ctx context.Context, out io.Writer, spec *images.Spec, f *upFlags, g *globalFlags) error {
	up, err := bringUp(ctx, out, spec, f, g)
	if err != nil {
		return err
	}
	defer up.Client.Close()
	var failed error
	if up.Report != nil {
		failed = up.Report.Err()
	}
	switch {
	case progressJSON:
		_ = newPrinter(out, false).Result(up.Fields())
	case failed != nil:
		fmt.Fprintf(os.Stderr, "labforge: %s: %v\n", up.Inst.Name, failed)
		fmt.Fprintf(out, "the instance is still up for inspection: labforge ssh -n %s, then labforge down %s\n", up.Inst.Name, up.Inst.Name)
	default:
		fmt.Fprint(out, up.Greeting())
	}
	if failed != nil {
		return exitError(1)
	}
	return nil
}

// bringUp is labhost.Up with the command's flags, its report written as
// they ask. The caller closes the client; a failed suite is not an error.
func bringUp(ctx context.Context, out io.Writer, spec *images.Spec, f *upFlags, g *globalFlags) (*labhost.Host, error) {
	up, err := labhost.Up(ctx, spec, labhost.Options{
		Name: f.name, BootTimeout: f.bootTimeout, NoVerify: f.noVerify, Cold: f.cold, SSHPort: f.sshPort,
		Build: labhost.BuildOptions{Force: f.build.force, BaseFile: f.build.baseFile},
	}, newPrinter(out, g.quiet))
	if err != nil {
		return nil, err
	}
	if up.Report != nil {
		if err := f.report.write(out, up.Report); err != nil {
			up.Client.Close()
			return nil, err
		}
	}
	return up, nil
}
