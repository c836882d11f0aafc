package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/labforge/labforge/internal/fsx"
	"github.com/labforge/labforge/internal/runx"
	"github.com/labforge/labforge/internal/virt"
)

// vagrantInsecureKey is the public half of Vagrant's well-known insecure
// key pair, which every Vagrant release tries first and then replaces.
const vagrantInsecureKey = "ssh-rsa AAAAB3NzaC1yc2EAAAABIwAAAQEA6NF8iallvQVp22WDkTkyrtvp9eWW6A8YVr+kz4TjGYe7gHzIw+niNltGEFHzD8+v1I2YJ6oXevct1YeS0o9HZyN1Q9qgCgzUFtdOKLv6IedplqoPkcmF0aYet2PkEDo3MlTBckFXPITAMzF8dJSIFo9D8HfdOV0IAdx4O7PtixWKn5y2hMNG0zQPyUecp4pzC6kivAIhyfHilFR61RGL+GPXQ2MWZWFYbAGjyiYJnAmCP3NOTd0jMZEnDkbUvxhMmBYSdETk1rRgm+R4LOzFUGaHqHDLKLX+FIPKcF96hrucXzcWyLbIbEgE98OHlnVYCzRdK8jlqm8tehUc9c9WhQ== vagrant insecure public key"

// vagrantCloudCfg is where the box's disk gets its vagrant account.
const vagrantCloudCfg = "/etc/cloud/cloud.cfg.d/95-labforge-vagrant.cfg"

// labelFrom is a file labforge wrote beside vagrantCloudCfg, whose SELinux
// label the new file takes (the policy labels both alike).
const labelFrom = "/etc/cloud/cloud.cfg.d/90-labforge.cfg"

// BoxOptions describe the machine a box's own Vagrantfile asks for.
type BoxOptions struct {
	Name      string   // box name, for messages in its Vagrantfile
	MemoryMiB int64    // lv.memory
	CPUs      int      // lv.cpus
	Loaders   []string // UEFI code images to try, in order, on the user's host
	Created   time.Time
}

// Box is what ExportBox wrote.
type Box struct {
	Path        string
	Bytes       int64 // the box file
	VirtualSize int64 // the disk as the guest sees it
	ImageBytes  int64 // box.img inside the box
}

// boxMetadata is vagrant-libvirt's metadata.json; virtual_size is whole GiB.
type boxMetadata struct {
	Provider    string `json:"provider"`
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual_size"`
}

// ExportBox writes image (with its whole backing chain) as a vagrant-libvirt
// box at out: an uncompressed tar of metadata.json, a Vagrantfile with the
// machine's defaults, and box.img, a standalone compressed qcow2 (already
// compressed, so the tar is not). The box's disk alone gets the vagrant
// account; the image is not changed. work is a directory for the raw copy.
func ExportBox(ctx context.Context, image, out, work string, o BoxOptions) (box *Box, err error) {
	if o.MemoryMiB <= 0 || o.CPUs <= 0 {
		return nil, fmt.Errorf("box %s: memory (%d MiB) and cpus (%d) must be positive", o.Name, o.MemoryMiB, o.CPUs)
	}
	if len(o.Loaders) == 0 {
		return nil, fmt.Errorf("box %s: no UEFI firmware paths for its Vagrantfile", o.Name)
	}
	undo, err := mkdirUndo(filepath.Dir(out))
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			undo()
		}
	}()
	release, err := UseCache(work)
	if err != nil {
		return nil, err
	}
	defer release()
	tmp, err := os.MkdirTemp(work, ".box-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	raw := filepath.Join(tmp, "disk.raw")
	format, err := checkImageFile(ctx, image, work)
	if err != nil {
		return nil, err
	}
	if err := runx.Run(ctx, nil, nil, "qemu-img", "convert", "-f", format, "-O", "raw", image, raw); err != nil {
		return nil, fmt.Errorf("box %s: flatten %s: %w", o.Name, image, err)
	}
	if err := addVagrantUser(ctx, raw, tmp); err != nil {
		return nil, fmt.Errorf("box %s: %s: %w", o.Name, image, err)
	}
	img := filepath.Join(tmp, "box.img")
	if err := runx.Run(ctx, nil, nil, "qemu-img", "convert", "-f", "raw", "-c", "-O", "qcow2", raw, img); err != nil {
		return nil, fmt.Errorf("box %s: %w", o.Name, err)
	}
	os.Remove(raw)
	size, _, err := virt.Qcow2Info(img)
	if err != nil {
		return nil, fmt.Errorf("box %s: %w", o.Name, err)
	}
	vsize := int64(size)
	meta, err := json.MarshalIndent(boxMetadata{Provider: "libvirt", Format: "qcow2", VirtualSize: (vsize + 1<<30 - 1) >> 30}, "", "  ")
	if err != nil {
		return nil, err
	}
	vf, err := render("box.Vagrantfile", o)
	if err != nil {
		return nil, err
	}
	// A name of its own beside the box: two exports cannot write into each
	// other's half-made file, and the rename that publishes it is atomic.
	pf, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".part-*")
	if err != nil {
		return nil, err
	}
	part := pf.Name()
	pf.Close()
	defer os.Remove(part)
	if err := writeBoxTar(part, o.Created, append(meta, '\n'), vf, img); err != nil {
		return nil, fmt.Errorf("box %s: write %s: %w", o.Name, out, err)
	}
	// A box is for handing out (CreateTemp made it 0600).
	if err := os.Chmod(part, 0o644); err != nil {
		return nil, err
	}
	if err := fsx.Sync(part); err != nil {
		return nil, err
	}
	st, err := os.Stat(part)
	if err != nil {
		return nil, err
	}
	ist, err := os.Stat(img)
	if err != nil {
		return nil, err
	}
	if err := os.Rename(part, out); err != nil {
		return nil, err
	}
	if err := fsx.Sync(filepath.Dir(out)); err != nil {
		return nil, err
	}
	return &Box{Path: out, Bytes: st.Size(), VirtualSize: vsize, ImageBytes: ist.Size()}, nil
}

// addVagrantUser writes the vagrant account's cloud-init configuration
// into the root file system of the raw disk, offline (debugfs: no loop
// device or mount), labelled like the file labforge wrote beside it.
func addVagrantUser(ctx context.Context, raw, tmp string) error {
	off, err := rootOffset(raw)
	if err != nil {
		return err
	}
	dev := raw + "?offset=" + strconv.FormatInt(off, 10)
	if _, err := debugfs(ctx, dev, false, "stat "+labelFrom); err != nil {
		return fmt.Errorf("not a labforge disk (no %s): %w", labelFrom, err)
	}
	cfg, err := render("vagrant.cfg", struct{ InsecureKey string }{vagrantInsecureKey})
	if err != nil {
		return err
	}
	src := filepath.Join(tmp, "vagrant.cfg")
	if err := os.WriteFile(src, cfg, 0o644); err != nil {
		return err
	}
	label := filepath.Join(tmp, "label")
	// An image without SELinux has no label to copy.
	_, labelErr := debugfs(ctx, dev, false, "ea_get -f "+label+" "+labelFrom+" security.selinux")
	cmds := []string{
		"rm " + vagrantCloudCfg, // absent on a first export: debugfs reports it and goes on
		"write " + src + " " + vagrantCloudCfg,
		"set_inode_field " + vagrantCloudCfg + " mode 0100644",
		"set_inode_field " + vagrantCloudCfg + " uid 0",
		"set_inode_field " + vagrantCloudCfg + " gid 0",
	}
	if labelErr == nil {
		cmds = append(cmds, "ea_set -f "+label+" "+vagrantCloudCfg+" security.selinux")
	}
	if _, err := debugfs(ctx, dev, true, cmds...); err != nil {
		return fmt.Errorf("add the vagrant account: %w", err)
	}
	return nil
}

// debugfs runs commands on an ext4 file system and fails on any error it
// prints (debugfs itself exits 0 regardless), except a missing file to rm.
func debugfs(ctx context.Context, dev string, write bool, cmds ...string) (string, error) {
	args := []string{"-f", "-"}
	if write {
		args = append([]string{"-w"}, args...)
	}
	cmd := exec.CommandContext(ctx, "debugfs", append(args, dev)...)
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	var outb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &outb
	if err := cmd.Run(); err != nil {
		return outb.String(), fmt.Errorf("debugfs: %w: %s", err, strings.TrimSpace(outb.String()))
	}
	for _, l := range strings.Split(outb.String(), "\n") {
		low := strings.ToLower(l)
		if strings.HasPrefix(l, "rm: ") {
			continue
		}
		if strings.Contains(low, "not found") || strings.Contains(low, "error") || strings.Contains(low, "could not") ||
			strings.Contains(low, "no such") || strings.Contains(low, "read-only") {
			return outb.String(), fmt.Errorf("debugfs: %s", strings.TrimSpace(l))
		}
	}
	return outb.String(), nil
}

// writeBoxTar writes the box's three files; fixed times and owners, so
// the archive depends on its contents only.
func writeBoxTar(path string, mtime time.Time, meta, vagrantfile []byte, img string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	hdr := func(name string, size int64) *tar.Header {
		return &tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: mtime.UTC().Truncate(time.Second), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	}
	for _, e := range []struct {
		name string
		data []byte
	}{{"metadata.json", meta}, {"Vagrantfile", vagrantfile}} {
		if err := tw.WriteHeader(hdr(e.name, int64(len(e.data)))); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	in, err := os.Open(img)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(hdr("box.img", st.Size())); err != nil {
		return err
	}
	if _, err := io.Copy(tw, in); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}
