package builder

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
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

// Prune takes the cache for itself: refused while another labforge uses
// it, and then it clears what killed runs left, but nothing that is an
// entry or a lock.
func TestCachePruneLockAndLeftovers(t *testing.T) {
	cache := t.TempDir()
	left := []string{".work-lab.123/rootfs/etc", ".tree-9/root", ".box-1", "upload-5", "rootfs/.tmp-abc-1/x", "bin/.build-kubernetes-7/out"}
	for _, d := range left {
		if err := os.MkdirAll(filepath.Join(cache, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	keep := []string{".build-lab.lock", "bin/kubernetes-v1/kubectl", "bases/rocky.qcow2.part"}
	for _, f := range keep {
		os.MkdirAll(filepath.Dir(filepath.Join(cache, f)), 0o755)
		if err := os.WriteFile(filepath.Join(cache, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	release, err := UseCache(cache)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CachePrune(cache, time.Now(), nil); err == nil {
		t.Fatal("prune ran while a build held the cache")
	}
	for _, d := range left {
		if _, err := os.Stat(filepath.Join(cache, d)); err != nil {
			t.Fatalf("a refused prune removed %s", d)
		}
	}
	release()
	removed, err := CachePrune(cache, time.Now().Add(-time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != len(left) {
		t.Fatalf("removed %d leftovers, want %d: %+v", len(removed), len(left), removed)
	}
	for _, d := range left {
		top := filepath.Join(cache, strings.SplitN(d, "/", 2)[0])
		if strings.HasPrefix(d, "rootfs/") || strings.HasPrefix(d, "bin/") {
			top = filepath.Join(cache, strings.Join(strings.SplitN(d, "/", 3)[:2], "/"))
		}
		if _, err := os.Stat(top); !os.IsNotExist(err) {
			t.Errorf("leftover %s still there", top)
		}
	}
	for _, f := range keep {
		if _, err := os.Stat(filepath.Join(cache, f)); err != nil {
			t.Errorf("prune removed %s", f)
		}
	}
}

// A mirror's credentials never reach an image or a build record.
func TestBareMirror(t *testing.T) {
	for in, want := range map[string]string{
		"http://user:s3cret@mirror.example/debian": "http://mirror.example/debian",
		"http://mirror.example/debian":             "http://mirror.example/debian",
		"":                                         "",
	} {
		if got := bareMirror(in); got != want || strings.Contains(got, "s3cret") {
			t.Errorf("bareMirror(%q) = %q, want %q", in, got, want)
		}
	}
}

// A warm state goes with its image, and stays while a host restored from
// it exists (its disk is that host's backing file), with its image.
func TestCachePruneWarm(t *testing.T) {
	mk := func() string {
		cache := t.TempDir()
		past := time.Now().Add(-48 * time.Hour)
		img := filepath.Join(cache, "images", "lab-aaaa.qcow2")
		state := filepath.Join(cache, "warm", "lab-ffff")
		os.MkdirAll(filepath.Dir(img), 0o755)
		os.MkdirAll(state, 0o750)
		os.WriteFile(img, []byte("image"), 0o644)
		os.WriteFile(filepath.Join(state, "disk.qcow2"), []byte("frozen"), 0o400)
		meta, _ := json.Marshal(map[string]string{"spec": "lab", "image": img})
		os.WriteFile(filepath.Join(state, "meta.json"), meta, 0o600)
		for _, p := range []string{img, state} {
			os.Chtimes(p, past, past)
		}
		return cache
	}
	cache := mk()
	entries, _ := CacheList(cache)
	var kinds []string
	for _, e := range entries {
		kinds = append(kinds, e.Kind+":"+e.Key+":"+e.Spec)
	}
	if !strings.Contains(strings.Join(kinds, " "), "warm:lab-ffff:lab") {
		t.Fatalf("cache ls: %v, want the warm state", kinds)
	}
	removed, err := CachePrune(cache, time.Now().Add(-24*time.Hour), nil)
	if err != nil || len(removed) != 2 {
		t.Fatalf("pruned %v (%v): want the old image and its warm state", removed, err)
	}
	if _, err := os.Stat(filepath.Join(cache, "warm", "lab-ffff")); !os.IsNotExist(err) {
		t.Fatal("the warm state outlived its image")
	}
	cache = mk()
	removed, err = CachePrune(cache, time.Now().Add(-24*time.Hour), []string{filepath.Join(cache, "warm", "lab-ffff", "disk.qcow2")})
	if err != nil || len(removed) != 0 {
		t.Fatalf("pruned %v (%v) under a restored host", removed, err)
	}
}
