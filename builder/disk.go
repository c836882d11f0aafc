package builder

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/labforge/labforge/internal/runx"
)

const (
	sector = 512
	// espSize is deliberate: go-diskfs writes FAT32 that reads back wrong
	// at some sizes (64 MiB, 129 MiB); 256 MiB is known good and holds a
	// kernel and initrd with room to spare.
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
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 1, FSType: filesystem.TypeFat32, VolumeLabel: "ESP", Reproducible: true})
	if err != nil {
		d.Close()
		return fmt.Errorf("make ESP: %w", err)
	}
	if err := writeESP(fs, esp); err != nil {
		d.Close()
		return err
	}
	if err := d.Close(); err != nil {
		return fmt.Errorf("close disk: %w", err)
	}
	// Fixed times and hash seed: two builds of one tree give one file system.
	env := []string{"E2FSPROGS_FAKE_TIME=1", "SOURCE_DATE_EPOCH=1"}
	return runx.Run(ctx, log, env, "mke2fs", "-q", "-F", "-t", "ext4",
		"-L", "root", "-U", ids.RootUUID,
		"-E", "offset="+strconv.FormatUint(l.RootStart*sector, 10)+",hash_seed="+ids.RootUUID,
		"-d", rootDir, path, strconv.FormatInt(l.rootKiB(), 10)+"k")
}

func writeESP(fs filesystem.FileSystem, files []espFile) error {
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	made := map[string]bool{}
	for _, f := range files {
		dir := filepath.Dir(f.Path)
		if dir != "/" && !made[dir] {
			if err := fs.Mkdir(dir); err != nil {
				return fmt.Errorf("ESP mkdir %s: %w", dir, err)
			}
			made[dir] = true
		}
		data := f.Data
		if f.Src != "" {
			var err error
			if data, err = os.ReadFile(f.Src); err != nil {
				return fmt.Errorf("ESP source: %w", err)
			}
		}
		w, err := fs.OpenFile(f.Path, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("ESP create %s: %w", f.Path, err)
		}
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("ESP write %s: %w", f.Path, err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("ESP close %s: %w", f.Path, err)
		}
	}
	return nil
}
