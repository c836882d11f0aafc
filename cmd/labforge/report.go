package main

import (
	"io"

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
	// With --progress-json stdout stays JSON lines: the command's result
	// event carries the counts, --junit the rest.
	if !progressJSON {
		if err := r.writeOne(out, rep); err != nil {
			return err
		}
	}
	return r.writeJUnit(rep)
}

// writeOne prints one report as a table or JSON.
func (r *reportFlags) writeOne(out io.Writer, rep *verify.Report) error {
	if r.json {
		return verify.WriteJSON(out, rep)
	}
	return verify.WriteTable(out, rep)
}

// writeJUnit writes the reports to the --junit file, one suite each.
func (r *reportFlags) writeJUnit(reps ...*verify.Report) error {
	if r.junit == "" {
		return nil
	}
	return verify.WriteJUnitFile(r.junit, reps...)
}
