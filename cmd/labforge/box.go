package main

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/labforge/labforge/builder"
	"github.com/labforge/labforge/images"
	"github.com/labforge/labforge/internal/labhost"
	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/progress"
)

func newBoxCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "box", Short: "Vagrant boxes of built images (vagrant-libvirt)"}
	cmd.AddCommand(newBoxExportCmd(g))
	return cmd
}

func newBoxExportCmd(g *globalFlags) *cobra.Command {
	var out, name string
	var memory string
	var cpus int
	cmd := &cobra.Command{
		Use:   "export [SPEC|IMAGE.qcow2] [-o FILE]",
		Short: "Write a vagrant-libvirt box of a spec's image (built if needed) or of a qcow2",
		Long: `box export writes a box for vagrant-libvirt: metadata.json, box.img (a
standalone qcow2 of the image) and a Vagrantfile with the machine's memory,
CPUs and UEFI firmware. The box's disk alone gets a vagrant account with
Vagrant's insecure key, which vagrant up replaces on first boot. Memory and
CPUs come from the spec (vm:), or from --memory and --cpus.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, w := cmd.Context(), cmd.OutOrStdout()
			o := builder.BoxOptions{Name: name, MemoryMiB: 2048, CPUs: 2, Created: time.Now()}
			image := argOr(args, "")
			stem := strings.TrimSuffix(filepath.Base(image), ".qcow2")
			if strings.HasSuffix(image, ".qcow2") {
				if _, err := os.Stat(image); err != nil {
					return err
				}
			} else {
				spec, err := loadSpec(args)
				if err != nil {
					return err
				}
				res, err := labhost.Build(ctx, spec, labhost.BuildOptions{}, newPrinter(w, g.quiet))
				if err != nil {
					return err
				}
				image, stem = res.Image, spec.Name
				o.MemoryMiB, o.CPUs = spec.VM.Memory.MiB(), spec.VM.CPUs
			}
			if memory != "" {
				m, err := images.ParseSize(memory)
				if err != nil {
					return fmt.Errorf("--memory: %w", err)
				}
				o.MemoryMiB = m.MiB()
			}
			o.CPUs = cmp.Or(cpus, o.CPUs)
			box, o, err := builder.ExportBoxAs(ctx, newPrinter(w, g.quiet), image, stem, out, paths.Cache(), o)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "%s (%s; disk %s virtual, box.img %s)\n", box.Path, progress.Bytes(box.Bytes), progress.Bytes(box.VirtualSize), progress.Bytes(box.ImageBytes))
			fmt.Fprintf(w, "vagrant box add --name %s %s\n", o.Name, box.Path)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "box file to write (default dist/NAME.box)")
	cmd.Flags().StringVar(&name, "name", "", "box name its Vagrantfile and the printed command use (default labforge/NAME)")
	cmd.Flags().StringVar(&memory, "memory", "", "the machine's memory, e.g. 4GiB (default: the spec's vm.memory)")
	cmd.Flags().IntVar(&cpus, "cpus", 0, "the machine's CPUs (default: the spec's vm.cpus)")
	return cmd
}
