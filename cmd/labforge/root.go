package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/spf13/cobra"

	"github.com/labforge/labforge/internal/progress"
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
		// Flags that would fail only after a long build fail now.
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error { return checkFlags(cmd) },
	}
	root.PersistentFlags().BoolVarP(&g.quiet, "quiet", "q", false, "print only errors and results")
	root.PersistentFlags().BoolVar(&progressJSON, "progress-json", false, "report build and boot steps as JSON lines (for tools driving labforge)")
	root.AddCommand(
		newBuildCmd(g), newUpCmd(g), newStartCmd(), newStopCmd(), newDownCmd(), newSSHCmd(), newVerifyCmd(),
		newListCmd(), newDoctorCmd(), newVersionCmd(), newImageCmd(g), newBoxCmd(g), newBenchCmd(), newClassCmd(g), newCacheCmd(),
		newLabCmd(), newCICmd(g), newSchemaCmd(),
	)
	// cobra's own completion command prints its help for a shell it does
	// not know and exits 0, which a script takes for a completion script.
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(&cobra.Command{
		Use:       "completion bash|zsh|fish|powershell",
		Short:     "Print the shell completion script",
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			}
			return root.GenPowerShellCompletionWithDesc(out)
		},
	})
	return root
}

// checkFlags refuses, by name, values no command can use: counts below
// one, durations of zero or less, a report file that cannot be written.
func checkFlags(cmd *cobra.Command) error {
	var err error
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if err != nil {
			return
		}
		switch f.Name {
		case "parallel", "students":
			if n, _ := strconv.Atoi(f.Value.String()); n < 1 {
				err = fmt.Errorf("--%s %s: must be at least 1", f.Name, f.Value)
			}
		case "boot-timeout", "timeout":
			// 0 may mean "each check's own" where that is the default.
			if d, perr := time.ParseDuration(f.Value.String()); perr == nil && (d < 0 || d == 0 && f.DefValue != "0s") {
				err = fmt.Errorf("--%s %s: must be more than zero", f.Name, f.Value)
			}
		case "junit":
			dir := filepath.Dir(f.Value.String())
			if st, serr := os.Stat(dir); serr != nil || !st.IsDir() || unix.Access(dir, unix.W_OK) != nil {
				err = fmt.Errorf("--junit %s: cannot write into %s", f.Value, dir)
			}
		}
	})
	return err
}

// progressJSON is set by the global --progress-json flag.
var progressJSON bool

// newPrinter is the step printer of a command writing to w.
func newPrinter(w io.Writer, quiet bool) *progress.Printer {
	return progress.New(w, quiet, progressJSON)
}
