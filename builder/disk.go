package builder

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/labforge/labforge/internal/runx"
)

const (
	sector = 512
	// espSize holds a kernel and initrd with room to spare, and with
	// 512-byte clusters has more than the 65525 clusters FAT32 needs.
	espSize  = 256 << 20
	espStart = 2048 // 1 MiB alignment
	// gptBackup is the sectors the backup GPT takes at the end of the disk.
	gptBackup = 34
)

// layout is where the partitions of a disk of a given size sit, in sectors.
type layout struct {
	Size               int64
	ESPStart, ESPEnd   uint64
	RootStart, RootEnd uint64
}

func newLayout(size int64) layout {
	l := layout{Size: size, ESPStart: espStart}
	l.ESPEnd = l.ESPStart + espSize/sector - 1
	l.RootStart = l.ESPEnd + 1
	l.RootEnd = uint64(size/sector) - gptBackup - 1
	// keep the root partition's end aligned to 1 MiB too
	l.RootEnd = (l.RootEnd+1)/2048*2048 - 1
	return l
}

// rootKiB is the ext4 size that fills the root partition exactly.
func (l layout) rootKiB() int64 { return int64(l.RootEnd-l.RootStart+1) * sector / 1024 }

// diskIDs pins the identifiers a disk is made with, so that builds of the
// same spec give the same disk.
type diskIDs struct {
	DiskGUID, ESPGUID, RootGUID, RootUUID string
}

// espFile is one file written to the EFI system partition.
type espFile struct {
	Path string // in the ESP, "/EFI/BOOT/BOOTX64.EFI"
	Src  string // on the host
	Data []byte // or literal content
}

// makeRawDisk writes a GPT disk at path: an ESP holding files and an ext4
// root populated from rootDir with mke2fs -d (go-diskfs's ext4 writer is
// unreliable at some sizes).
func makeRawDisk(ctx context.Context, path string, size int64, ids diskIDs, rootDir string, esp []espFile, log io.Writer) error {
	l := newLayout(size)
	d, err := diskfs.Create(path, size, diskfs.SectorSizeDefault)
	if err != nil {
		return fmt.Errorf("create disk %s: %w", path, err)
	}
	table := &gpt.Table{
		LogicalSectorSize:  sector,
		PhysicalSectorSize: sector,
		ProtectiveMBR:      true,
		GUID:               ids.DiskGUID,
		Partitions: []*gpt.Partition{
			{Index: 1, Start: l.ESPStart, End: l.ESPEnd, Type: gpt.EFISystemPartition, Name: "ESP", GUID: ids.ESPGUID},
			{Index: 2, Start: l.RootStart, End: l.RootEnd, Type: gpt.LinuxRootX86_64, Name: "root", GUID: ids.RootGUID},
		},
	}
	if err := d.Partition(table); err != nil {
		d.Close()
		return fmt.Errorf("partition %s: %w", path, err)
	}
	if err := d.Close(); err != nil {
		return fmt.Errorf("close disk: %w", err)
	}
	// The ESP is written by dosfstools and mtools, which work on the image
	// file at an offset (no loop device) and make a FAT32 that fsck.fat
	// finds clean; go-diskfs's had bad ".." entries and an unset free
	// cluster count.
	if err := writeESP(ctx, path, l, ids, esp, log); err != nil {
		return err
	}
	// Fixed times and hash seed: two builds of one tree give one file system.
	env := []string{"E2FSPROGS_FAKE_TIME=1", "SOURCE_DATE_EPOCH=1"}
	return runx.Run(ctx, log, env, "mke2fs", "-q", "-F", "-t", "ext4",
		"-L", "root", "-U", ids.RootUUID,
		"-E", "offset="+strconv.FormatUint(l.RootStart*sector, 10)+",hash_seed="+ids.RootUUID,
		"-d", rootDir, path, strconv.FormatInt(l.rootKiB(), 10)+"k")
}

// espEpoch dates every file and directory of the ESP (FAT cannot hold
// 1970): two builds of one tree give one ESP.
const espEpoch = "1577836800"

// writeESP makes the FAT32 file system of the ESP in place in the raw disk
// at path and copies files into it.
func writeESP(ctx context.Context, path string, l layout, ids diskIDs, files []espFile, log io.Writer) error {
	env := []string{"SOURCE_DATE_EPOCH=" + espEpoch, "MTOOLS_SKIP_CHECK=1"}
	volID := strings.ReplaceAll(ids.ESPGUID, "-", "")
	if len(volID) < 8 {
		return fmt.Errorf("ESP GUID %q too short for a volume id", ids.ESPGUID)
	}
	// One sector a cluster: 256 MiB then has the clusters FAT32 needs.
	if err := runx.Run(ctx, log, env, "mkfs.fat", "-F", "32", "-s", "1", "-S", strconv.Itoa(sector), "-n", "ESP",
		"-i", volID[:8], "--invariant", "--offset", strconv.FormatUint(l.ESPStart, 10),
		path, strconv.Itoa(espSize/1024)); err != nil {
		return fmt.Errorf("make ESP: %w", err)
	}
	img := path + "@@" + strconv.FormatUint(l.ESPStart*sector, 10)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	stage, err := os.MkdirTemp(filepath.Dir(path), ".esp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	made := map[string]bool{"/": true}
	for i, f := range files {
		var dirs []string
		for d := filepath.Dir(f.Path); !made[d]; d = filepath.Dir(d) {
			dirs = append([]string{"::" + d}, dirs...)
			made[d] = true
		}
		if len(dirs) > 0 {
			if err := runx.Run(ctx, log, env, "mmd", append([]string{"-i", img}, dirs...)...); err != nil {
				return fmt.Errorf("ESP mkdir %s: %w", strings.Join(dirs, " "), err)
			}
		}
		src := f.Src
		if src == "" {
			src = filepath.Join(stage, strconv.Itoa(i))
			if err := os.WriteFile(src, f.Data, 0o644); err != nil {
				return err
			}
		}
		if err := runx.Run(ctx, log, env, "mcopy", "-i", img, src, "::"+f.Path); err != nil {
			return fmt.Errorf("ESP write %s: %w", f.Path, err)
		}
	}
	return nil
}
