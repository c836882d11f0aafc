package builder

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Description is what an image holds, read from its own files.
type Description struct {
	TreeDigest string            `json:"treeDigest"`
	TreeLabels bool              `json:"treeLabels"` // SELinux labels are part of the digest
	Packages   map[string]string `json:"packages"`
	// Kernel is the installed kernel's release; not "kernel", which the
	// record that embeds this already uses for the kernel file it booted.
	Kernel    string `json:"kernelRelease"`
	Policy    string `json:"selinuxPolicy,omitempty"`
	OSRelease string `json:"osRelease"`
}

// describe opens the image, writes its manifest to manifestPath and
// returns what it holds.
func describe(ctx context.Context, image, tmpDir, manifestPath string) (*Description, error) {
	t, err := OpenTree(ctx, image, tmpDir)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	entries, err := Manifest(t.Root, t.Labels)
	if err != nil {
		return nil, err
	}
	f, err := os.Create(manifestPath + ".tmp")
	if err != nil {
		return nil, err
	}
	if err := WriteManifest(f, entries); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(manifestPath+".tmp", manifestPath); err != nil {
		return nil, err
	}
	d := &Description{TreeDigest: Digest(entries), TreeLabels: t.Labels, Packages: dpkgPackages(t.Root)}
	ks, _ := filepath.Glob(filepath.Join(t.Root, "boot", "vmlinuz-*"))
	sort.Strings(ks)
	if len(ks) > 0 {
		d.Kernel = strings.TrimPrefix(filepath.Base(ks[len(ks)-1]), "vmlinuz-")
	}
	d.Policy = d.Packages["selinux-policy-default"]
	if b, err := os.ReadFile(filepath.Join(t.Root, "etc", "os-release")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				d.OSRelease = strings.Trim(v, `"`)
			}
		}
	}
	return d, nil
}

// dpkgPackages reads installed packages and versions from dpkg's status.
func dpkgPackages(root string) map[string]string {
	out := map[string]string{}
	f, err := os.Open(filepath.Join(root, "var", "lib", "dpkg", "status"))
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var name, version string
	installed := false
	flush := func() {
		if name != "" && installed {
			out[name] = version
		}
		name, version, installed = "", "", false
	}
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == "":
			flush()
		case strings.HasPrefix(l, "Package: "):
			name = strings.TrimPrefix(l, "Package: ")
		case strings.HasPrefix(l, "Version: "):
			version = strings.TrimPrefix(l, "Version: ")
		case strings.HasPrefix(l, "Status: "):
			installed = strings.HasSuffix(l, " installed")
		}
	}
	flush()
	return out
}

// imageRecordPath is where the record of a final image is kept.
func imageRecordPath(image string) string {
	return strings.TrimSuffix(image, ".qcow2") + ".record.json"
}

// manifestPath is where the file-tree manifest of a final image is kept.
func manifestPath(image string) string { return strings.TrimSuffix(image, ".qcow2") + ".tree" }

func readImageRecord(image string) (*Record, error) {
	data, err := os.ReadFile(imageRecordPath(image))
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", imageRecordPath(image), err)
	}
	return &r, nil
}
