package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/labforge/labforge/builder"
	"github.com/labforge/labforge/internal/paths"
)

func newCacheCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cache", Short: "Show and trim the build cache (" + paths.Cache() + ")"}
	cmd.AddCommand(&cobra.Command{
		Use:   "ls",
		Short: "Root file systems, base disks, layers, bases and warm states: size, age, key, owner",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			entries, err := builder.CacheList(paths.Cache())
			if err != nil {
				return err
			}
			return builder.WriteCacheList(cmd.OutOrStdout(), entries)
		},
	})
	var olderThan time.Duration
	prune := &cobra.Command{
		Use:   "prune [--older-than 168h]",
		Short: "Remove entries not written for a while (and the layers built on them), never what an instance uses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if olderThan < 0 {
				return fmt.Errorf("--older-than %s: must not be negative (0 removes everything no instance uses)", olderThan)
			}
			return builder.CachePruneUnused(cmd.OutOrStdout(), paths.Cache(), time.Now().Add(-olderThan))
		},
	}
	prune.Flags().DurationVar(&olderThan, "older-than", 7*24*time.Hour, "remove entries not written for this long (0 removes all unused)")
	cmd.AddCommand(prune)
	return cmd
}
