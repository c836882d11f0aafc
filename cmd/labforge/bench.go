package main

import (
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/labforge/labforge/internal/bench"
	"github.com/labforge/labforge/internal/paths"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Measure labforge on this machine and print a table"}
	cmd.AddCommand(newBenchVerifyCmd(), newBenchPeersCmd(), &cobra.Command{
		Use:   "up [SPEC]",
		Short: "up from cold vs up restored from the image's warm state, each to SSH-ready and verified",
		Long: `bench up brings up the spec's host twice in one run, each verified by the
spec's suite and then removed: from cold (up --cold), and restored from the
image's warm state (made first, and timed apart, when the image has none).
Each time is given as a ratio to the cold one. Output of both goes to a log.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := loadSpec(args)
			if err != nil {
				return err
			}
			return bench.Up(cmd.Context(), cmd.OutOrStdout(), spec)
		},
	}, &cobra.Command{
		Use:   "layers SPEC",
		Short: "Layer cache: cold build vs unchanged rebuild vs rebuild after changing the last step",
		Long: `bench layers builds SPEC (which must have provisioning steps) three ways in one
run and prints each time as a ratio of the first: a forced full build (root fs
from cache, then the disk, a build guest and every step), a rebuild with no
change, and a rebuild after changing only the last step.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return bench.Layers(cmd.Context(), cmd.OutOrStdout(), args[0])
		},
	})
	return cmd
}

func newBenchVerifyCmd() *cobra.Command {
	var name, logPath, suitePath string
	var n int
	cmd := &cobra.Command{
		Use:   "verify [-n NAME] [--checks N | --suite FILE] [--log FILE]",
		Short: "N checks on a running host: labforge verify (guest agent, in order and concurrent; scripts; one exec per check) vs one `ssh host cmd` per check",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return bench.Verify(cmd.Context(), cmd.OutOrStdout(), name, n, suitePath, logPath)
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "default", "instance name")
	cmd.Flags().StringVar(&suitePath, "suite", "", "time this suite's checks (one attempt each) instead of N cheap ones")
	cmd.Flags().IntVar(&n, "checks", 100, "number of checks")
	cmd.Flags().StringVar(&logPath, "log", "", "where the ssh loop's output goes (default: the instance's directory)")
	return cmd
}

func newBenchPeersCmd() *cobra.Command {
	b := bench.Peers{}
	var out string
	cmd := &cobra.Command{
		Use:   "peers [SPEC]",
		Short: "labforge against Packer, Vagrant and an ssh loop on the same work, in one run",
		Long: `bench peers measures, in one run on this machine, labforge and the tools lab
hosts are made with today, on the same base disk and the same provisioning:

  1. rebuild after changing the last step: labforge (layer cache) vs Packer's
     QEMU builder (same base disk, same step scripts, same seal);
  2. boot to SSH-ready: labforge up vs vagrant up of the exported box, with
     each guest's own systemd-analyze;
  3. 100 checks on a running host: labforge verify vs one ssh per check;
  4. a class of 8: linked clones (labforge class create) vs full copies;
  5. the exported image: labforge image export vs Packer's output.

Needs packer (1.6), vagrant and vagrant-libvirt (Debian packages). Every
command's output is kept in the output directory; the table is printed and
written there as table.md.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := "bench/peers.yaml"
			if len(args) == 1 {
				spec = args[0]
			}
			if out == "" {
				out = filepath.Join(paths.State(), "bench", time.Now().Format("20060102-150405"))
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			b.Self, b.Dir = self, out
			return b.Run(cmd.Context(), cmd.OutOrStdout(), spec)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "directory for the logs and table (default STATE/bench/TIME)")
	cmd.Flags().IntVar(&b.Students, "students", 8, "class size for the clone measure")
	cmd.Flags().IntVar(&b.Checks, "checks", 100, "checks for the verify measure")
	return cmd
}
