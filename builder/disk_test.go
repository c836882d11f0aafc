package builder

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A disk labforge writes has an ESP and a root file system that their own
// checkers find clean (firmware other than OVMF, fsck at boot and tools
// that write to the ESP read them too).
func TestRawDiskFileSystemsClean(t *testing.T) {
	for _, tool := range []string{"mkfs.fat", "mcopy", "mke2fs", "fsck.fat", "e2fsck"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s (scripts/install installs it)", tool)
		}
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "hostname"), []byte("t\n"), 0o644)
	kernel := filepath.Join(dir, "vmlinuz")
	os.WriteFile(kernel, make([]byte, 3<<20), 0o644)
	esp := []espFile{
		{Path: "/EFI/BOOT/BOOTX64.EFI", Src: kernel},
		{Path: "/loader/loader.conf", Data: []byte("timeout 0\n")},
		{Path: "/loader/entries/labforge.conf", Data: []byte("title t\n")},
		{Path: "/vmlinuz", Src: kernel},
	}
	ids := diskIDs{DiskGUID: "5C4E4F4E-0000-4000-8000-000000000001", ESPGUID: "5C4E4F4E-0000-4000-8000-000000000002",
		RootGUID: "5C4E4F4E-0000-4000-8000-000000000003", RootUUID: "5c4e4f4e-0000-4000-8000-000000000004"}
	disk := filepath.Join(dir, "disk.raw")
	const size = 640 << 20
	if err := makeRawDisk(context.Background(), disk, size, ids, root, esp, io.Discard); err != nil {
		t.Fatal(err)
	}
	l := newLayout(size)
	// fsck.fat reads a file system, not a disk: copy the ESP out.
	in, _ := os.Open(disk)
	defer in.Close()
	espImg := filepath.Join(dir, "esp.img")
	out, _ := os.Create(espImg)
	if _, err := io.Copy(out, io.NewSectionReader(in, int64(l.ESPStart)*sector, espSize)); err != nil {
		t.Fatal(err)
	}
	out.Close()
	if o, err := exec.Command("fsck.fat", "-n", "-v", espImg).CombinedOutput(); err != nil || strings.Contains(string(o), "Invalid") || strings.Contains(string(o), "uninitialized") {
		t.Fatalf("fsck.fat -n on the ESP: %v\n%s", err, o)
	}
	if o, err := exec.Command("mdir", "-i", espImg, "::/loader/entries").CombinedOutput(); err != nil || !strings.Contains(string(o), "labforge.conf") {
		t.Fatalf("the loader entry in the ESP: %v\n%s", err, o)
	}
	rootDev := disk + "?offset=" + strconv.FormatUint(l.RootStart*sector, 10)
	if o, err := exec.Command("e2fsck", "-fn", rootDev).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn on the root: %v\n%s", err, o)
	}
}
