package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/labforge/labforge/internal/schema"
)

func newSchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:       "schema spec|suite|exercise",
		Short:     "Print the JSON Schema of image specs, verify suites or course exercises (for editors)",
		Long:      "schema prints the JSON Schema that the repository keeps beside each loader\n(images/spec.schema.json, verify/suite.schema.json, labs/exercise.schema.json);\na YAML language server completes and checks files that name it.",
		ValidArgs: []string{"spec", "suite", "exercise"},
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := schema.Lookup(args[0])
			if err != nil {
				return err
			}
			data, err := k.Generate()
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), string(data))
			return nil
		},
	}
}
