package main

import (
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
	"github.com/labforge/labforge/internal/virt"
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
			ctx := cmd.Context()
			w := cmd.OutOrStdout()
			var image, stem string
			memMiB, ncpu := int64(2048), 2
			if len(args) == 1 && strings.HasSuffix(args[0], ".qcow2") {
				if _, err := os.Stat(args[0]); err != nil {
					return err
				}
				image, stem = args[0], strings.TrimSuffix(filepath.Base(args[0]), ".qcow2")
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
				memMiB, ncpu = spec.VM.Memory.MiB(), spec.VM.CPUs
			}
			if memory != "" {
				m, err := images.ParseSize(memory)
				if err != nil {
					return fmt.Errorf("--memory: %w", err)
				}
				memMiB = m.MiB()
			}
			if cpus != 0 {
				ncpu = cpus
			}
			if name == "" {
				name = "labforge/" + stem
			}
			if out == "" {
				out = filepath.Join("dist", stem+".box")
			}
			var loaders []string
			for _, f := range virt.Firmwares() {
				loaders = append(loaders, f.Code)
			}
			if err := os.MkdirAll(paths.Cache(), 0o755); err != nil {
				return err
			}
			var box *builder.Box
			p := newPrinter(w, g.quiet)
			if err := p.Timed("box", func() (string, error) {
				var err error
				box, err = builder.ExportBox(ctx, image, out, paths.Cache(), builder.BoxOptions{
					Name: name, MemoryMiB: memMiB, CPUs: ncpu, Loaders: loaders, Created: time.Now(),
				})
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("%d MiB, %d CPUs, UEFI", memMiB, ncpu), nil
			}); err != nil {
				return err
			}
			fmt.Fprintf(w, "%s (%s; disk %s virtual, box.img %s)\n", box.Path, progress.Bytes(box.Bytes), progress.Bytes(box.VirtualSize), progress.Bytes(box.ImageBytes))
			fmt.Fprintf(w, "vagrant box add --name %s %s\n", name, box.Path)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "box file to write (default dist/NAME.box)")
	cmd.Flags().StringVar(&name, "name", "", "box name its Vagrantfile and the printed command use (default labforge/NAME)")
	cmd.Flags().StringVar(&memory, "memory", "", "the machine's memory, e.g. 4GiB (default: the spec's vm.memory)")
	cmd.Flags().IntVar(&cpus, "cpus", 0, "the machine's CPUs (default: the spec's vm.cpus)")
	return cmd
}
