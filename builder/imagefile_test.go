package builder

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// An image that names a host file as its backing file (or data file) is
// refused before qemu-img reads it; labforge's own layered images, backed
// inside the cache, pass; a raw file is taken as raw.
func TestCheckImageFile(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("no qemu-img (scripts/install installs it)")
	}
	ctx := context.Background()
	cache, elsewhere := t.TempDir(), t.TempDir()
	img := func(dir, name string, args ...string) string {
		p := filepath.Join(dir, name)
		cmd := append([]string{"create", "-q", "-f", "qcow2"}, args...)
		if out, err := exec.Command("qemu-img", append(cmd, p, "1M")...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img create %s: %v %s", name, err, out)
		}
		return p
	}
	secret := filepath.Join(elsewhere, "secret")
	os.WriteFile(secret, []byte("host secret"), 0o600)

	base := img(cache, "layer.qcow2")
	if f, err := checkImageFile(ctx, img(cache, "image.qcow2", "-F", "qcow2", "-b", base), cache); err != nil || f != "qcow2" {
		t.Fatalf("an image on its cache layer: %q %v", f, err)
	}
	raw := filepath.Join(elsewhere, "disk.raw")
	os.WriteFile(raw, make([]byte, 1<<20), 0o644)
	if f, err := checkImageFile(ctx, raw, cache); err != nil || f != "raw" {
		t.Fatalf("a raw disk: %q %v", f, err)
	}
	for name, args := range map[string][]string{
		"backed by a host file":   {"-F", "raw", "-b", secret},
		"backed outside by chain": {"-F", "qcow2", "-b", img(elsewhere, "mid.qcow2", "-F", "raw", "-b", secret)},
		"external data file":      {"-o", "data_file=" + filepath.Join(elsewhere, "data.raw")},
	} {
		_, err := checkImageFile(ctx, img(elsewhere, strings.ReplaceAll(name, " ", "-")+".qcow2", args...), cache)
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error is not one line: %q", name, err)
		}
	}
	// A chain that starts inside the cache may not leave it either.
	inside := img(cache, "inside.qcow2", "-F", "raw", "-b", secret)
	if _, err := checkImageFile(ctx, img(cache, "top.qcow2", "-F", "qcow2", "-b", inside), cache); err == nil {
		t.Error("a cache image backed by a host file was accepted")
	}
}
