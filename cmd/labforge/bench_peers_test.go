package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labforge/labforge/images"
)

func TestGuestBoot(t *testing.T) {
	out := "Startup finished in 13.794s (kernel) + 1min 28.929s (userspace) = 1min 42.723s \ngraphical.target reached after 1min 14s in userspace.\n"
	if got := guestBoot(out); got != "1min 42.723s" {
		t.Fatalf("got %q", got)
	}
	if r := spanRatio("1min 30s", "2min 15s"); r < 0.666 || r > 0.667 {
		t.Fatalf("spanRatio = %f", r)
	}
}

// The rebuild measure edits the last step of a copy of the spec; the copy
// must still load, with the new script and everything else unchanged.
func TestRewriteLastStep(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile("../../bench/peers.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "peers.yaml")
	if err := os.WriteFile(p, src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rewriteLastStep(p, "echo MARKER > /etc/labforge-marker\n# bench 1\n"); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "files"), 0o755)
	os.WriteFile(filepath.Join(dir, "files", "motd"), []byte("x\n"), 0o644)
	spec, err := images.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(spec.Provision); n != 2 || !strings.HasSuffix(spec.Provision[1].Run, "# bench 1\n") || spec.Provision[0].Run != "install -m 0644 files/motd /etc/motd" {
		t.Fatalf("steps after the rewrite: %+v", spec.Provision)
	}
}
