package builder

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCachePrune(t *testing.T) {
	mk := func(cache string, old bool) {
		write := func(p string, data []byte, mtime time.Time) {
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			os.Chtimes(p, mtime, mtime)
		}
		now, past := time.Now(), time.Now().Add(-48*time.Hour)
		write(filepath.Join(cache, "images", "lab-aaaa.qcow2"), []byte("base"), past)
		meta := func(key, parent string) []byte {
			b, _ := json.Marshal(layerMeta{Key: key, Parent: parent, Step: key})
			return b
		}
		write(filepath.Join(cache, "layers", "bbbb.qcow2"), []byte("l1"), now)
		write(filepath.Join(cache, "layers", "bbbb.json"), meta("bbbb", "aaaa"), now)
		write(filepath.Join(cache, "layers", "cccc.qcow2"), []byte("l2"), now)
		write(filepath.Join(cache, "layers", "cccc.json"), meta("cccc", "bbbb"), now)
		write(filepath.Join(cache, "images", "other-dddd.qcow2"), []byte("new"), now)
	}
	cache := t.TempDir()
	mk(cache, true)
	removed, err := CachePrune(cache, time.Now().Add(-24*time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, e := range removed {
		got[e.Key] = true
	}
	if !got["aaaa"] || !got["bbbb"] || !got["cccc"] || got["dddd"] {
		t.Fatalf("removed %v: want the old base and the layers built on it, not the new image", got)
	}
	if _, err := os.Stat(filepath.Join(cache, "layers", "cccc.json")); !os.IsNotExist(err) {
		t.Fatal("a removed layer's record is left")
	}

	// An instance on the top layer keeps its whole chain.
	cache = t.TempDir()
	mk(cache, true)
	removed, err = CachePrune(cache, time.Now().Add(-24*time.Hour), []string{filepath.Join(cache, "layers", "cccc.qcow2")})
	if err != nil || len(removed) != 0 {
		t.Fatalf("pruned %v (%v) under a running instance", removed, err)
	}
}
