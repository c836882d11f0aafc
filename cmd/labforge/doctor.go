package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/labforge/labforge/internal/doctor"
	"github.com/labforge/labforge/internal/paths"
)

func newDoctorCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check host tools, libvirtd, acceleration and disk space, with a fix for each",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			checks := doctor.Run(cmd.Context(), paths.Cache(), paths.State())
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			failed := 0
			for _, c := range checks {
				status := "ok"
				switch {
				case c.OK:
				case c.Warn:
					status = "warn"
				default:
					status = "FAIL"
					failed++
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", status, c.Name, c.Detail)
				if !c.OK && c.Fix != "" {
					fmt.Fprintf(tw, "\t\tfix: %s\n", c.Fix)
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("%d problem(s) found", failed)
			}
			return nil
		},
	}
}
