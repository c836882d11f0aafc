package e2e

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// fileSystemsClean: the ESP and the root file system of the disk image
// at img pass fsck.fat -n and e2fsck -fn with no finding. The image is
// made raw in a temporary directory; the ESP is copied out (fsck.fat reads
// a file system, not a disk), e2fsck reads the root at its offset.
func fileSystemsClean(t *testing.T, img string) {
	t.Helper()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	if out, err := exec.Command("qemu-img", "convert", "-f", "qcow2", "-O", "raw", img, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert %s: %v: %s", img, err, out)
	}
	d, err := diskfs.Open(raw, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := d.GetPartitionTable()
	d.Close()
	if err != nil {
		t.Fatalf("%s: %v", img, err)
	}
	table, ok := pt.(*gpt.Table)
	if !ok {
		t.Fatalf("%s: not a GPT disk", img)
	}
	sector := int64(table.LogicalSectorSize)
	var esp, root bool
	for _, p := range table.Partitions {
		switch p.Type {
		case gpt.EFISystemPartition:
			esp = true
			in, err := os.Open(raw)
			if err != nil {
				t.Fatal(err)
			}
			espImg := filepath.Join(dir, "esp.img")
			f, err := os.Create(espImg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.Copy(f, io.NewSectionReader(in, int64(p.Start)*sector, int64(p.End-p.Start+1)*sector))
			in.Close()
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			o, err := exec.Command("fsck.fat", "-n", "-v", espImg).CombinedOutput()
			if err != nil || strings.Contains(string(o), "Invalid") || strings.Contains(string(o), "uninitialized") {
				t.Errorf("%s: fsck.fat -n on the ESP: %v\n%s", img, err, o)
			}
		case gpt.LinuxFilesystem, gpt.LinuxRootX86_64:
			root = true
			dev := raw + "?offset=" + strconv.FormatInt(int64(p.Start)*sector, 10)
			if o, err := exec.Command("e2fsck", "-fn", dev).CombinedOutput(); err != nil {
				t.Errorf("%s: e2fsck -fn on the root: %v\n%s", img, err, o)
			}
		}
	}
	if !esp || !root {
		t.Fatalf("%s: found ESP %v, root %v", img, esp, root)
	}
}
