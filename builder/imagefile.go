package builder

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// imageInfo is what `qemu-img info --output=json` says of one file.
type imageInfo struct {
	Format          string `json:"format"`
	BackingFilename string `json:"backing-filename"`
	FullBacking     string `json:"full-backing-filename"`
	FormatSpecific  struct {
		Data struct {
			DataFile string `json:"data-file"`
		} `json:"data"`
	} `json:"format-specific"`
}

// checkImageFile says which format a disk image has, and refuses one that
// would make qemu-img read other files of this host: a qcow2 whose backing
// file (at any depth) lies outside trusted (labforge's own cache, where
// built images sit on their layers), or with an external data file. Every
// later qemu-img call gets that format with -f, so the bytes of a raw
// image can never be taken for a qcow2 header naming a host file.
func checkImageFile(ctx context.Context, path, trusted string) (string, error) {
	info, err := qemuImgInfo(ctx, path)
	if err != nil {
		return "", err
	}
	switch info.Format {
	case "qcow2", "raw":
	default:
		return "", fmt.Errorf("%s: a %s image; labforge reads qcow2 and raw only", path, info.Format)
	}
	if info.FormatSpecific.Data.DataFile != "" {
		return "", fmt.Errorf("%s: its data lives in another file (%s); labforge refuses external data files", path, info.FormatSpecific.Data.DataFile)
	}
	for cur, depth := info, 0; cur.BackingFilename != ""; depth++ {
		backing := cur.FullBacking
		if backing == "" {
			backing = cur.BackingFilename
		}
		if !filepath.IsAbs(backing) {
			backing = filepath.Join(filepath.Dir(path), backing)
		}
		if !within(trusted, backing) || depth > 64 {
			return "", fmt.Errorf("%s: backed by %s, outside labforge's cache %s; labforge reads only self-contained images (qemu-img convert makes one)", path, cur.BackingFilename, trusted)
		}
		if cur, err = qemuImgInfo(ctx, backing); err != nil {
			return "", err
		}
		if cur.FormatSpecific.Data.DataFile != "" || cur.Format != "qcow2" {
			return "", fmt.Errorf("%s: its backing file %s is not a plain qcow2", path, backing)
		}
		path = backing
	}
	return info.Format, nil
}

func qemuImgInfo(ctx context.Context, path string) (imageInfo, error) {
	var info imageInfo
	// -U: a running guest's disk may be read, never locked or changed.
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "-U", "--output=json", path).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return info, fmt.Errorf("%s: not a disk image qemu-img can read: %s", path, strings.ReplaceAll(msg, "\n", " "))
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return info, fmt.Errorf("%s: qemu-img info: %w", path, err)
	}
	return info, nil
}

// within says whether path (links resolved) lies under dir.
func within(dir, path string) bool {
	d, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return false
	}
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false
	}
	rel, err := filepath.Rel(d, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
