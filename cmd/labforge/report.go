package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/labforge/labforge/verify"
)

// reportFlags choose how verify results are shown and kept.
type reportFlags struct {
	json  bool
	junit string
}

func (r *reportFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&r.json, "json", false, "print verify results as JSON instead of a table")
	cmd.Flags().StringVar(&r.junit, "junit", "", "also write verify results as JUnit XML to this file")
}

func (r *reportFlags) write(out io.Writer, rep *verify.Report) error {
	var err error
	if r.json {
		err = verify.WriteJSON(out, rep)
	} else {
		err = verify.WriteTable(out, rep)
	}
	if err != nil {
		return err
	}
	if r.junit != "" {
		f, err := os.Create(r.junit)
		if err != nil {
			return fmt.Errorf("junit: %w", err)
		}
		if err := verify.WriteJUnit(f, rep); err != nil {
			f.Close()
			return fmt.Errorf("junit %s: %w", r.junit, err)
		}
		return f.Close()
	}
	return nil
}
