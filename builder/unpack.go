package builder

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/labforge/labforge/internal/runx"
	"github.com/labforge/labforge/verify"
)

// Tree is an image's root file system opened on the host, so that checks
// can inspect the image itself without booting it (a boot would change it:
// first-boot identity, logs).
type Tree struct {
	Root    string
	dir     string
	mounted bool
	release func() // the shared hold on the cache, while dir exists
	// Labels says whether SELinux labels are visible (a loop mount shows
	// them; an unpacked copy does not).
	Labels bool
}

// OpenTree opens image's root partition read-only under tmpDir: through a
// loop mount where the host allows one, else unpacked with debugfs, which
// needs neither a loop device nor mount rights.
func OpenTree(ctx context.Context, image, tmpDir string) (*Tree, error) {
	release, err := UseCache(tmpDir)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(tmpDir, ".tree-")
	if err != nil {
		release()
		return nil, err
	}
	t := &Tree{Root: filepath.Join(dir, "root"), dir: dir, release: release}
	raw := filepath.Join(dir, "disk.raw")
	format, err := checkImageFile(ctx, image, tmpDir)
	if err != nil {
		t.Close()
		return nil, err
	}
	if err := runx.Run(ctx, nil, nil, "qemu-img", "convert", "-f", format, "-O", "raw", image, raw); err != nil {
		t.Close()
		return nil, err
	}
	offset, err := rootOffset(raw)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("%s: %w", image, err)
	}
	if err := os.Mkdir(t.Root, 0o755); err != nil {
		t.Close()
		return nil, err
	}
	if err := exec.CommandContext(ctx, "mount", "-o", "ro,nosuid,nodev,loop,offset="+strconv.FormatInt(offset, 10), raw, t.Root).Run(); err == nil {
		t.mounted, t.Labels = true, true
		return t, nil
	}
	cmd := exec.CommandContext(ctx, "debugfs", "-R", "rdump / "+t.Root, raw+"?offset="+strconv.FormatInt(offset, 10))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Close()
		return nil, fmt.Errorf("unpack %s: %w: %s", image, err, out.String())
	}
	os.Remove(raw)
	return t, nil
}

// rootOffset finds the byte offset of the Linux root partition.
func rootOffset(raw string) (int64, error) {
	d, err := diskfs.Open(raw, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return 0, err
	}
	defer d.Close()
	pt, err := d.GetPartitionTable()
	if err != nil {
		return 0, err
	}
	table, ok := pt.(*gpt.Table)
	if !ok {
		return 0, fmt.Errorf("not a GPT disk")
	}
	for _, p := range table.Partitions {
		if p.Type == gpt.LinuxRootX86_64 || p.Type == gpt.LinuxFilesystem {
			return int64(p.Start) * int64(table.LogicalSectorSize), nil
		}
	}
	return 0, fmt.Errorf("no Linux root partition")
}

// Run runs cmd in the unpacked tree (chroot), as the verify engine asks.
func (t *Tree) Run(ctx context.Context, cmd string) (verify.Result, error) {
	c := exec.CommandContext(ctx, "chroot", t.Root, "/bin/sh", "-c", cmd)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	res := verify.Result{Stdout: out.String(), Stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.ExitCode = ee.ExitCode()
		return res, nil
	}
	return res, err
}

// Close unmounts or deletes the tree.
func (t *Tree) Close() error {
	if t.mounted {
		if out, err := exec.Command("umount", t.Root).CombinedOutput(); err != nil {
			return fmt.Errorf("umount %s: %w: %s", t.Root, err, out)
		}
	}
	err := os.RemoveAll(t.dir)
	if t.release != nil {
		t.release()
	}
	return err
}
