package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/labforge/labforge/images"
	"github.com/labforge/labforge/internal/labhost"
)

type buildFlags struct {
	force    bool
	baseFile string
}

func newBuildCmd(g *globalFlags) *cobra.Command {
	f := &buildFlags{}
	cmd := &cobra.Command{
		Use:   "build [SPEC]",
		Short: "Build the image of a spec (cached; default " + defaultSpec + ")",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := loadSpec(args)
			if err != nil {
				return err
			}
			res, err := labhost.Build(cmd.Context(), spec, labhost.BuildOptions{Force: f.force, BaseFile: f.baseFile}, newPrinter(cmd.OutOrStdout(), g.quiet))
			if err != nil {
				return err
			}
			if progressJSON { // stdout stays JSON lines: the result is the last event
				return newPrinter(cmd.OutOrStdout(), false).Result(res.Fields())
			}
			fmt.Fprintln(cmd.OutOrStdout(), res)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func (f *buildFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.force, "force", false, "rebuild the image even when it is cached")
	cmd.Flags().StringVar(&f.baseFile, "base-file", "", "use this copy of a cloud base image (checked against the catalogue's sha256)")
}

func loadSpec(args []string) (*images.Spec, error) {
	path := defaultSpec
	if len(args) > 0 {
		path = args[0]
	}
	return images.Load(path)
}
