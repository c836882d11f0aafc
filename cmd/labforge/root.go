package main

import (
	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// defaultSpec is the host `up`, `build`, `class create` and `box export`
// use when given none: the course's lab host.
const defaultSpec = "images/container-internals.yaml"

type globalFlags struct {
	quiet bool
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "labforge",
		Short: "Build, boot and verify identical lab hosts",
		Long: `labforge builds lab hosts as VM disks from a spec (images/*.yaml), boots them
through libvirt with a copy-on-write overlay, and verifies them over SSH.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.PersistentFlags().BoolVarP(&g.quiet, "quiet", "q", false, "print only errors and results")
	root.PersistentFlags().BoolVar(&progressJSON, "progress-json", false, "report build and boot steps as JSON lines (for tools driving labforge)")
	root.AddCommand(
		newBuildCmd(g), newUpCmd(g), newStartCmd(), newStopCmd(), newDownCmd(), newSSHCmd(), newVerifyCmd(),
		newListCmd(), newDoctorCmd(), newVersionCmd(), newImageCmd(g), newBoxCmd(g), newBenchCmd(), newClassCmd(g), newCacheCmd(),
		newLabCmd(), newCICmd(g),
	)
	return root
}
