package main

import (
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/labforge/labforge/builder"
	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/progress"
	"github.com/labforge/labforge/internal/warm"
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
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KIND\tKEY\tSIZE\tAGE\tUSED BY")
			var total int64
			for _, e := range entries {
				total += e.Bytes
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Kind, e.Key, progress.Bytes(e.Bytes), time.Since(e.Used).Round(time.Minute), e.Spec)
			}
			fmt.Fprintf(tw, "total\t\t%s\t\t\n", progress.Bytes(total))
			return tw.Flush()
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
			var inUse []string
			names, err := instance.List()
			if err != nil {
				return err
			}
			for _, n := range names {
				if inst, err := instance.Load(n); err == nil {
					inUse = append(inUse, inst.Image)
					if inst.Restored != "" {
						inUse = append(inUse, filepath.Join(warm.Root(), inst.Restored, "disk.qcow2"))
					}
				}
			}
			removed, err := builder.CachePrune(paths.Cache(), time.Now().Add(-olderThan), inUse)
			var freed int64
			for _, e := range removed {
				freed += e.Bytes
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s %s (%s)\n", e.Kind, e.Key, progress.Bytes(e.Bytes))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "freed %s\n", progress.Bytes(freed))
			return err
		},
	}
	prune.Flags().DurationVar(&olderThan, "older-than", 7*24*time.Hour, "remove entries not written for this long (0 removes all unused)")
	cmd.AddCommand(prune)
	return cmd
}
