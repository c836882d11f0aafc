package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/labforge/labforge/builder"
	"github.com/labforge/labforge/internal/labhost"
	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/progress"
)

func newImageCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Export built images and inspect them offline"}
	cmd.AddCommand(newImageExportCmd(g), newImageVerifyCmd(), newImageDiffCmd())
	return cmd
}

func newImageExportCmd(g *globalFlags) *cobra.Command {
	var outDir string
	cmd := &cobra.Command{
		Use:   "export [SPEC]",
		Short: "Build (cached) and write a compressed, self-contained qcow2 with its sha256 and build record",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := loadSpec(args)
			if err != nil {
				return err
			}
			res, err := labhost.Build(cmd.Context(), spec, labhost.BuildOptions{}, newPrinter(cmd.OutOrStdout(), g.quiet))
			if err != nil {
				return err
			}
			p := newPrinter(cmd.OutOrStdout(), g.quiet)
			var ex *builder.Exported
			if err := p.Timed("export", func() (string, error) {
				var err error
				ex, err = builder.Export(cmd.Context(), res, spec.Name, outDir)
				return "", err
			}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s (%s)\nsha256 %s\nrecord %s\n", ex.Image, progress.Bytes(ex.Bytes), ex.SHA256, ex.Record)
			return nil
		},
	}
	cmd.Flags().StringVarP(&outDir, "output", "o", "dist", "directory to write the image, its .sha256 and its .json record to")
	return cmd
}

func newImageVerifyCmd() *cobra.Command {
	var suitePath string
	var report reportFlags
	cmd := &cobra.Command{
		Use:   "verify IMAGE",
		Short: "Run a suite on an image's own files, without booting it (default: the seal suite)",
		Long: `image verify unpacks the image's root file system (debugfs, no mount) and runs
each check in a chroot of it. With the default suite, images/seal.verify.yaml,
it proves that the image holds no build user, key, host key, machine-id, log
or history: what a boot would recreate cannot hide what the build left.

The checks run the image's own /bin/sh as root in a chroot: verify only images
you trust (labforge's builds and exports). The image must be self-contained
(no backing file outside labforge's cache, no external data file); its root is
mounted read-only, nosuid and nodev, in a directory only root can enter.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, err := builder.VerifyImage(cmd.Context(), args[0], suitePath, paths.Cache())
			if err != nil {
				return err
			}
			if err := report.write(cmd.OutOrStdout(), rep); err != nil {
				return err
			}
			if err := rep.Err(); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "labforge: %s: %v\n", args[0], err)
				return exitError(1)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&suitePath, "suite", "", "verify suite to run (default: the built-in seal suite, images/seal.verify.yaml)")
	report.register(cmd)
	return cmd
}

func newImageDiffCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "diff A.json B.json",
		Short: "What differs between two build records: OS, kernel, policy, packages, files (mode, owner, label, content)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			changes, err := builder.DiffRecords(args[0], args[1])
			if err != nil {
				return err
			}
			return builder.WriteChanges(cmd.OutOrStdout(), changes, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the differences as JSON")
	return cmd
}
