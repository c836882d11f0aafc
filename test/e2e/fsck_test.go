package e2e

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
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
	out, err := exec.Command("sfdisk", "--json", raw).Output()
	if err != nil {
		t.Fatalf("sfdisk --json %s: %v", img, err)
	}
	var table struct {
		PartitionTable struct {
			SectorSize int64 `json:"sectorsize"`
			Partitions []struct {
				Start, Size int64
				Type        string
			}
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(out, &table); err != nil {
		t.Fatal(err)
	}
	sector := table.PartitionTable.SectorSize
	if sector == 0 {
		sector = 512
	}
	var esp, root bool
	for _, p := range table.PartitionTable.Partitions {
		switch strings.ToUpper(p.Type) {
		case "C12A7328-F81F-11D2-BA4B-00A0C93EC93B": // EFI system partition
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
			_, err = io.Copy(f, io.NewSectionReader(in, p.Start*sector, p.Size*sector))
			in.Close()
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			o, err := exec.Command("fsck.fat", "-n", "-v", espImg).CombinedOutput()
			if err != nil || strings.Contains(string(o), "Invalid") || strings.Contains(string(o), "uninitialized") {
				t.Errorf("%s: fsck.fat -n on the ESP: %v\n%s", img, err, o)
			}
		case "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709": // Linux data, x86-64 root
			root = true
			dev := raw + "?offset=" + strconv.FormatInt(p.Start*sector, 10)
			if o, err := exec.Command("e2fsck", "-fn", dev).CombinedOutput(); err != nil {
				t.Errorf("%s: e2fsck -fn on the root: %v\n%s", img, err, o)
			}
		}
	}
	if !esp || !root {
		t.Fatalf("%s: found ESP %v, root %v in %s", img, esp, root, out)
	}
}
