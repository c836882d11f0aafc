package builder

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/labforge/labforge/internal/fsx"
)

// TreeEntry is one path of a root file system as the file-tree digest sees
// it: what a student's host would differ by.
type TreeEntry struct {
	Path    string
	Mode    fs.FileMode
	UID     uint32
	GID     uint32
	Label   string // SELinux context, "?" when not visible
	Content string // sha256 of a file, target of a link, "" for others
}

func (e TreeEntry) String() string {
	return fmt.Sprintf("%s\t%s\t%d:%d\t%s\t%s", e.Path, e.Mode, e.UID, e.GID, e.Label, e.Content)
}

// Manifest walks root and describes every path in sorted order.
func Manifest(root string, labels bool) ([]TreeEntry, error) {
	var out []TreeEntry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "lost+found" && d.IsDir() {
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		e := TreeEntry{Path: "/" + strings.TrimPrefix(rel, "."), Mode: info.Mode(), UID: st.Uid, GID: st.Gid, Label: "?"}
		if labels {
			buf := make([]byte, 256)
			if n, err := unix.Lgetxattr(p, "security.selinux", buf); err == nil {
				e.Label = strings.TrimRight(string(buf[:n]), "\x00")
			} else {
				e.Label = "-"
			}
		}
		switch {
		case info.Mode().IsRegular():
			sum, err := fsx.SHA256(p)
			if err != nil {
				return err
			}
			e.Content = sum
		case info.Mode()&fs.ModeSymlink != 0:
			if e.Content, err = os.Readlink(p); err != nil {
				return err
			}
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("manifest of %s: %w", root, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// Digest is the file-tree digest: the sha256 of the manifest.
func Digest(entries []TreeEntry) string {
	h := sha256.New()
	for _, e := range entries {
		fmt.Fprintln(h, e.String())
	}
	return hex.EncodeToString(h.Sum(nil))
}

// WriteManifest writes entries one per line.
func WriteManifest(w io.Writer, entries []TreeEntry) error {
	bw := bufio.NewWriter(w)
	for _, e := range entries {
		fmt.Fprintln(bw, e.String())
	}
	return bw.Flush()
}

// ReadManifest reads what WriteManifest wrote; a line is kept as text
// after its path, which is all a diff needs.
func ReadManifest(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		path, rest, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			return nil, fmt.Errorf("bad manifest line %q", sc.Text())
		}
		out[path] = rest
	}
	return out, sc.Err()
}
