package builder

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/labforge/labforge/internal/fsx"
)

// CacheEntry is one thing in the cache.
type CacheEntry struct {
	Kind  string    // rootfs, image, layer, base, warm
	Key   string    // content key
	Path  string    // the entry's main file or directory
	Bytes int64     // space it takes
	Used  time.Time // last written
	Spec  string    // the spec (or step) it belongs to, when known
	files []string  // everything that goes with it
	image string    // a warm state's image: the state goes with it
}

// CacheList lists root file systems, base disks, layers and downloaded bases.
func CacheList(cacheDir string) ([]CacheEntry, error) {
	var out []CacheEntry
	dirs, _ := filepath.Glob(filepath.Join(cacheDir, "rootfs", "*"))
	for _, d := range dirs {
		if st, err := os.Stat(d); err == nil && st.IsDir() && !strings.HasPrefix(filepath.Base(d), ".") {
			out = append(out, CacheEntry{Kind: "rootfs", Key: filepath.Base(d), Path: d, Bytes: du(d), Used: st.ModTime(), files: []string{d, d + ".lock"}})
		}
	}
	imgs, _ := filepath.Glob(filepath.Join(cacheDir, "images", "*.qcow2"))
	for _, p := range imgs {
		e := fileEntry("image", p)
		base := strings.TrimSuffix(p, ".qcow2")
		e.Key = base[strings.LastIndexByte(base, '-')+1:]
		e.Spec = strings.TrimSuffix(filepath.Base(base), "-"+e.Key)
		e.files = []string{p, base + ".json", base + ".record.json", base + ".tree"}
		out = append(out, e)
	}
	layers, _ := filepath.Glob(filepath.Join(cacheDir, "layers", "*.qcow2"))
	for _, p := range layers {
		e := fileEntry("layer", p)
		base := strings.TrimSuffix(p, ".qcow2")
		e.Key = filepath.Base(base)
		var m layerMeta
		if data, err := os.ReadFile(base + ".json"); err == nil && json.Unmarshal(data, &m) == nil {
			e.Spec = "step " + m.Step
		}
		e.files = []string{p, base + ".json", base + ".record.json", base + ".tree"}
		out = append(out, e)
	}
	warm, _ := filepath.Glob(filepath.Join(cacheDir, "warm", "*"))
	for _, d := range warm {
		st, err := os.Stat(d)
		if err != nil || !st.IsDir() || strings.HasPrefix(filepath.Base(d), ".") {
			continue
		}
		e := CacheEntry{Kind: "warm", Key: filepath.Base(d), Path: d, Bytes: du(d), Used: st.ModTime(), files: []string{d, d + ".lock"}}
		var m struct{ Spec, Image string }
		if data, err := os.ReadFile(filepath.Join(d, "meta.json")); err == nil && json.Unmarshal(data, &m) == nil {
			e.Spec, e.image = m.Spec, m.Image
		} else {
			// A state made unusable (damaged, expired) whose disk a
			// restored host still uses: it goes when no host does.
			e.Spec = "(retired)"
		}
		out = append(out, e)
	}
	bases, _ := filepath.Glob(filepath.Join(cacheDir, "bases", "*.qcow2"))
	for _, p := range bases {
		e := fileEntry("base", p)
		e.Key = filepath.Base(p)
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Used.After(out[j].Used) })
	return out, nil
}

// LeftoverGlobs are the temporary names that builds, exports, uploads and
// image checks use in the cache, relative to it.
var LeftoverGlobs = []string{".work-*", "warm/.work-*", ".tree-*", ".box-*", "upload-*", "rootfs/.tmp-*", "bin/.build-*", "images/.*.tmp-*", "layers/.*.tmp-*", "images/*.tmp", "layers/*.tmp"}

// leftovers lists what killed labforge runs left in the cache. Only
// meaningful while the cache lock is held exclusively.
func leftovers(cacheDir string) []CacheEntry {
	var out []CacheEntry
	for _, g := range LeftoverGlobs {
		m, _ := filepath.Glob(filepath.Join(cacheDir, g))
		for _, p := range m {
			st, err := os.Lstat(p)
			if err != nil {
				continue
			}
			e := CacheEntry{Kind: "leftover", Key: strings.TrimPrefix(p, cacheDir+"/"), Path: p, Used: st.ModTime(), files: []string{p}}
			if st.IsDir() {
				e.Kind, e.Bytes = "leftover-dir", du(p)
			} else {
				e.Bytes = allocatedBytes(st)
			}
			out = append(out, e)
		}
	}
	return out
}

func fileEntry(kind, p string) CacheEntry {
	e := CacheEntry{Kind: kind, Path: p, files: []string{p}}
	if st, err := os.Stat(p); err == nil {
		e.Used, e.Bytes = st.ModTime(), allocatedBytes(st)
	}
	return e
}

// CacheRemove deletes an entry with everything that goes with it.
func CacheRemove(e CacheEntry) error {
	for _, f := range e.files {
		// A root fs, or a killed run's tree, may still have mounts in it.
		if (e.Kind == "rootfs" || e.Kind == "leftover-dir") && f == e.Path {
			if e.Kind == "leftover-dir" {
				_ = unmount(filepath.Join(f, "root")) // an image check's loop mount
				removeTree(filepath.Join(f, "rootfs"))
			}
			removeTree(f)
			continue
		}
		if err := os.RemoveAll(f); err != nil {
			return err
		}
	}
	return nil
}

func du(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil {
			if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
				n += allocatedBytes(info)
			}
		}
		return nil
	})
	return n
}

// CachePrune removes entries last written before cutoff, together with
// every layer built on a removed entry, and never an entry that one of
// inUse (images of existing instances) is built on. It returns what it removed.
func CachePrune(cacheDir string, cutoff time.Time, inUse []string) ([]CacheEntry, error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := fsx.Lock(cacheLock(cacheDir), false)
	if errors.Is(err, fsx.ErrLocked) {
		return nil, fmt.Errorf("the cache %s is in use by another labforge (a build, an export, an upload or an image check): prune when it is done", cacheDir)
	}
	if err != nil {
		return nil, fmt.Errorf("cache lock: %w", err)
	}
	defer unlock()
	entries, err := CacheList(cacheDir)
	if err != nil {
		return nil, err
	}
	parent := map[string]string{} // layer key -> parent key
	byKey := map[string]CacheEntry{}
	for _, e := range entries {
		byKey[e.Key] = e
		if e.Kind == "layer" {
			var m layerMeta
			if data, err := os.ReadFile(strings.TrimSuffix(e.Path, ".qcow2") + ".json"); err == nil && json.Unmarshal(data, &m) == nil {
				parent[e.Key] = m.Parent
			}
		}
	}
	keep := map[string]bool{}
	warmDir := filepath.Join(cacheDir, "warm") + "/"
	for i, img := range inUse {
		// A host restored from a warm state runs on its disk: the state
		// stays, and so does its image.
		if rest, ok := strings.CutPrefix(img, warmDir); ok {
			id, _, _ := strings.Cut(rest, "/")
			keep[id] = true
			if e, ok := byKey[id]; ok && e.image != "" {
				inUse[i] = e.image
			}
		}
	}
	for _, img := range inUse {
		k := strings.TrimSuffix(filepath.Base(img), ".qcow2")
		if i := strings.LastIndexByte(k, '-'); i >= 0 {
			k = k[i+1:]
		}
		for ; k != ""; k = parent[k] {
			keep[k] = true
		}
	}
	gone := map[string]bool{}
	for _, e := range entries {
		if e.Used.Before(cutoff) && !keep[e.Key] {
			gone[e.Key] = true
		}
	}
	// A warm state goes with its image (and when retired, with its last host).
	imageGone := func(p string) bool {
		for _, e := range entries {
			if e.Kind == "image" && e.Path == p {
				return gone[e.Key]
			}
		}
		return true
	}
	for _, e := range entries {
		if e.Kind == "warm" && !keep[e.Key] && (e.image == "" || imageGone(e.image)) {
			gone[e.Key] = true
		}
	}
	// A layer on a removed parent is unusable: it goes too.
	for changed := true; changed; {
		changed = false
		for k, p := range parent {
			if !gone[k] && gone[p] && !keep[k] {
				gone[k], changed = true, true
			}
		}
	}
	var removed []CacheEntry
	// Nobody else holds the cache: every temporary file in it was left by
	// a labforge that was killed.
	for _, e := range leftovers(cacheDir) {
		if err := CacheRemove(e); err != nil {
			return removed, err
		}
		removed = append(removed, e)
	}
	for _, e := range entries {
		if gone[e.Key] {
			if err := CacheRemove(e); err != nil {
				return removed, err
			}
			removed = append(removed, e)
		}
	}
	return removed, nil
}
